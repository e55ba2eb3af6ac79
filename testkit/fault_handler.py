"""The processor handler of test stacks: the real one, with the fault hook (``testkit.faults``) around
the aggregates table's DynamoDB client.

Selected only by the template parameter ``TestHooks=faults`` (``Handler: !If``), which only test deploys
set (``scripts/deploy.sh --test-hooks faults``, ``tests/integration/conftest.py``); their code package
is ``build/processor-testhooks.zip`` (the processor bundle plus ``testkit/``). Without
``PROCESSOR_FAULTS`` it behaves exactly like ``functions.processor.handler.handler``: same ports, same
``run``. Every other deploy ships neither this module nor the hook.
"""

from __future__ import annotations

from typing import Any

from functions.processor import handler as processor
from functions.processor.ingestion_processor import ProcessorConfig, ProcessorPorts
from testkit import faults

logger = processor.logger
_ports: ProcessorPorts | None = None
_config: ProcessorConfig | None = None
_faults: faults.FaultInjectingDynamoDB | None = None  # only when PROCESSOR_FAULTS is set


def build_ports() -> ProcessorPorts:
    """The real handler's ports; the aggregates client wrapped when a test set PROCESSOR_FAULTS."""
    global _faults
    plan = faults.get_plan()  # None unless PROCESSOR_FAULTS is set (and the target is an emulator)
    if plan is None:
        return processor.build_ports()
    from functions.adapters.clients import client

    _faults = faults.FaultInjectingDynamoDB(client("dynamodb"), plan)
    logger.warning("fault injection enabled on aggregate writes", extra={"faults": plan.describe()})
    return processor.build_ports(aggregates_dynamodb=_faults)


def _get() -> tuple[ProcessorPorts, ProcessorConfig]:
    global _ports, _config
    if _ports is None or _config is None:
        _config = processor.build_config()
        _ports = build_ports()
    return _ports, _config


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ports, config = _get()
    if _faults is not None:
        _faults.begin_invocation()
    try:
        return processor.run(event, context, ports, config)
    except faults.InjectedFault as exc:
        # Report it as an ordinary function error (an unhandled exception): the mapping retries the batch.
        logger.error("injected fault: invocation fails after a partial write", extra={"fault": str(exc)})
        raise RuntimeError(f"injected fault: {exc}") from exc
