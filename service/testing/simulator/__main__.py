"""``python -m service.testing.simulator``: see :func:`service.testing.simulator.cli.main`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
