"""``python -m service``: the same as the ``router-health`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
