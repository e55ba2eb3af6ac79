"""``iotpipe``: run the pipeline on the embedded emulator, deploy it, and look at it.

    iotpipe up [--devices N] [--rate HZ] [--shards N] [--parallelization N] [--port P] [--fresh]
               [--detector embedded|sagemaker]                   emulator + deploy + seed + simulator + API
                                                                 (sagemaker: + the local model server)
    iotpipe down                                                 stop what `up` started (by its pid)
    iotpipe deploy [--target embedded|localstack|aws] [...]      scripts/deploy.sh
    iotpipe status [--json] [--stack NAME]                       outputs and pipeline counts
    iotpipe rebuild [--json] [--stack NAME]                      aggregates + anomalies from the archive
    iotpipe query "SELECT ..." | --named NAME [--param K=V] [--json]  SQL over the archive (Athena)
    iotpipe archive compact [--hour YYYY-MM-DDTHH ... | --all] [--force] [--json]  Parquet per hour
    iotpipe model evaluate                                       leave-one-family-out (SKAB, TEP, simulator)
    iotpipe model evaluate --dataset skab|tep|simulator [...]    one data set (see docs/model-card.md)
    iotpipe model evaluate --select-on DIR... --report-on DIR... choose on some folders, report once on others
    iotpipe model train --source simulator|csv [--csv FILE]       the fleet forest (model/train.py)
    iotpipe model calibrate --device ID (--csv FILE | --from-archive) per-device PCA T2+Q onto the device item
    iotpipe model calibrate --pending                            every requesting device, N readings archived
    iotpipe model operating-point [--write]                     re-derive model/artifacts/pca-tq-v2.json
    iotpipe model replay-eval FILE|DIR...                        SKAB through the deployed pipeline vs offline
    iotpipe devices provision NAME... | --count N [--stack NAME]  IoT things + certificates, keys kept 0600
    iotpipe devices list | revoke THING [--stack NAME]           stored identities; certificate INACTIVE
    iotpipe cost --devices N --rate R [--json]                   monthly AWS cost model

The root app and its groups are in app.py; one module per command group registers its commands on
them when imported (below, in the order --help lists them). The work is done in iotpipe/local/
(the emulator, the supervisor of `up`), iotpipe/ops/ (a deployed stack), iotpipe/cost/ and model/.
"""

from __future__ import annotations

import typer

from iotpipe.cli.app import PASS_THROUGH, app
from iotpipe.console import run_app

# isort: off
from iotpipe.cli import run  # noqa: F401 - up, down, deploy
from iotpipe.cli import ops  # noqa: F401 - status, rebuild, query, archive compact
from iotpipe.cli import model  # noqa: F401 - model ...
from iotpipe.cli import devices  # noqa: F401 - devices provision, list, revoke
# isort: on


@app.command(context_settings=PASS_THROUGH, add_help_option=False,
             help="monthly AWS cost model (its own --help)")
def cost(ctx: typer.Context) -> int:
    from iotpipe.cost import main as cost_main

    return int(cost_main(list(ctx.args)))


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="iotpipe")
