"""Test furniture the build never ships (``scripts/build.py`` copies only ``functions/``):

- ``fakes``: one in-memory fake per table (same Protocols as ``functions/adapters``), archive, metrics,
  alerts, Kinesis, the /stats failure counters;
- ``events``: event factories (readings, Kinesis and API Gateway events) and a fake Lambda context;
- ``processor``: the processor test harness (``fake_ports``);
- ``faults`` and ``fault_handler``: the fault hook and the processor handler only test stacks run
  (``TestHooks=faults``, packaged as ``build/processor-testhooks.zip``);
- ``seed`` and ``demo_api``: seeded stores and the API demo app factory.
"""
