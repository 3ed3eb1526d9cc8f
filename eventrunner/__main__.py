"""``python -m eventrunner``: the same as the ``eventrunner`` command."""

import sys

from eventrunner.cli import main

sys.exit(main())
