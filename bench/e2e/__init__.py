"""The end-to-end benchmark's parts (``bench/end_to_end.py`` is the command). One module per step of a run:

- ``options``: what a run is asked to do (``Options``);
- ``load``: producing (simulator records, the Kinesis sinks, the paced sender);
- ``noop``: the no-op function and mapping that give the emulator's own drain rate;
- ``measure``: what the pipeline did (DynamoDB totals, archive lines, latency probe, conservation);
- ``point``: one point of the curve (deploy, capacity, latency, conservation);
- ``calls``: the AWS call counter (the real handler in-process, botocore hooks);
- ``memory``: peak RSS of the emulator's process tree; ``cold_start``: packages' import times and sizes;
- ``scaling``: the ``--shards`` curve and its plots; ``report``: the readable lines and the JSON line;
- ``run``: the whole run, in order.
"""
