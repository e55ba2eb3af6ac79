"""``python -m serving``: the same as the container's ``serve``."""

from serving.app import main

raise SystemExit(main())
