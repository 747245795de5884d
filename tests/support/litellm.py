"""LiteLLM for the plugin's tests: skipped without it locally, a failure under ``CI=true``."""

from __future__ import annotations

import os
from typing import Any


def require_litellm(tests: str) -> Any:
    """The ``litellm`` module; skip without it, or fail under ``CI=true`` (CI must run ``tests``)."""
    import pytest

    # Without this LiteLLM downloads its price map at import (and retries for
    # seconds offline); the copy it ships is as good for the tests.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError:
        reason = "LiteLLM is not installed (pip install -e '.[litellm]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} — CI must run {tests}")
        pytest.skip(f"{reason} — {tests} not run (CI installs it and fails instead)")
    return litellm
