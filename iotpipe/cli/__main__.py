"""``python -m iotpipe.cli``: the same as the ``iotpipe`` command."""

from iotpipe.cli import main

raise SystemExit(main())
