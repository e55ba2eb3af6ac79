"""``python -m iotpipe.cost``: the same as ``iotpipe cost``."""

from iotpipe.cost.cli import main

raise SystemExit(main())
