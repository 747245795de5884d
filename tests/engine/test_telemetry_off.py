"""Tracing off, and the ``otel`` extra missing: nothing changes, and a file asking for it says why.

Each test runs a fresh interpreter: one where ``opentelemetry`` cannot be
imported (as without the extra, whether or not it is installed here), one
with tracing simply off. Neither needs the extra, so these run everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Makes ``opentelemetry`` unimportable in a fresh interpreter, as if the extra were not installed.
WITHOUT_OTEL = """
import importlib.abc, sys

class NoOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoOpenTelemetry())
"""

RUN_A_CHECK = """
import logging, sys, trio
from adapters import CallableAdapter
from service import AdapterManager, ConfigError, parse_config

logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(message)s")
MODELS = [{"name": "m", "providers": [{"name": "local", "type": "ollama",
                                        "base_url": "http://127.0.0.1:9"}]}]

async def ok():
    return True

async def main(config):
    async with AdapterManager(config) as manager:
        manager.register_adapter("m", CallableAdapter("callable", ok))
        plan = {"m": [a for a in manager.model_adapters["m"] if a.provider == "callable"]}
        report = await manager.health_checker.run(plan)
        print("run:", report.status.value, "tracing:", manager.health_checker.tracing.on)

try:
    parse_config({"models": MODELS, "telemetry": {"enabled": True}}, env={})
except ConfigError as error:
    print("explicit:", error)
config = parse_config({"models": MODELS}, env=ENV)
trio.run(main, config)
print("imported:", sorted(m for m in sys.modules if m.startswith("opentelemetry.")
                           and m.count(".") > 1 and "exporter" not in m))
"""


def run_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_without_the_extra_a_config_asking_for_traces_says_what_to_install() -> None:
    output = run_python(WITHOUT_OTEL + 'ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}'
                        + RUN_A_CHECK)
    assert (
        "explicit: <config>: telemetry.enabled: tracing needs the OpenTelemetry SDK and OTLP "
        "exporter, which are not installed: pip install 'router-health[otel]' "
        "(or set enabled = false)"
    ) in output
    # Asked for by the environment alone: the checks run, without traces, and it says why.
    assert (
        "WARNING OTEL_EXPORTER_OTLP_ENDPOINT asks for traces, but tracing needs the OpenTelemetry "
        "SDK and OTLP exporter, which are not installed: pip install 'router-health[otel]'; "
        "running without them"
    ) in output
    assert "run: healthy tracing: False" in output


def test_with_tracing_off_nothing_of_opentelemetry_is_imported() -> None:
    output = run_python("ENV = {}" + RUN_A_CHECK)
    assert "run: healthy tracing: False" in output
    assert "imported: []" in output
    assert "WARNING" not in output
