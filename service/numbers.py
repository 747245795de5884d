"""Number checks shared by everything that validates user input."""

from __future__ import annotations

import math

__all__ = ["finite"]


def finite(value: float) -> bool:
    """``math.isfinite``, but False (not OverflowError) for an int too large for a float.

    TOML and JSON integers have no size limit; a 400-digit timeout must get
    a precise message, not a traceback.
    """
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
