"""``python -m stylecam``: the ``stylecam`` command."""

import sys

from stylecam.cli import main

sys.exit(main())
