"""``python -m geedl_plugin ...``: the command line runner over core."""

import sys

from .cli import main

sys.exit(main())
