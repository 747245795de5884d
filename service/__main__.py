"""``python -m service``: the same as the ``router-health`` command."""

import sys

from .cli import main

sys.exit(main())
