"""The ``router-health`` command, run as a real process against the simulator."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
import trio

from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.app import V1_TOP_FIELDS
from tests.support.cli import cli_process, read_stderr, read_stdout_until, run_cli
from tests.support.configs import write_config


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    return [
        SimProvider("openai", "openai", "rhtestkey-sim-openai-0123456789", ["gpt-4"], Behavior(latency=0.01)),
        SimProvider("claude", "anthropic", "rhtestkey-sim-claude-0123456789", ["claude-3"], Behavior(latency=0.01)),
    ]


async def test_check_exits_0_and_prints_a_table_when_healthy(sim: Simulator, tmp_path: Path) -> None:
    done = await run_cli("check", "--config", str(write_config(tmp_path / "c.toml", sim)))
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr
    assert out.splitlines()[0].split() == ["MODEL", "PROVIDER", "STATUS", "LATENCY", "ERROR"]
    assert "openai-model" in out and "claude-model" in out
    assert "status: healthy" in out


async def test_check_exits_1_when_degraded_and_2_when_unhealthy(sim: Simulator, tmp_path: Path) -> None:
    config = str(write_config(tmp_path / "c.toml", sim))
    sim.set_behavior("openai", mode="status", status=503)
    degraded = await run_cli("check", "--config", config)
    assert degraded.returncode == 1
    assert "HTTP 503" in degraded.stdout.decode()
    sim.set_behavior("claude", mode="unauthorized")
    unhealthy = await run_cli("check", "--config", config, "--sequential")
    assert unhealthy.returncode == 2
    assert "(sequential" in unhealthy.stdout.decode()


async def test_check_json_is_the_v1_shape(sim: Simulator, tmp_path: Path) -> None:
    done = await run_cli("check", "--config", str(write_config(tmp_path / "c.toml", sim)), "--json", "--model", "claude-model")
    report = json.loads(done.stdout)
    assert list(report)[:8] == list(V1_TOP_FIELDS)
    assert list(report["models"]) == ["claude-model"]
    assert "rhtestkey-sim-claude-0123456789" not in done.stdout.decode()


async def test_check_reports_a_bad_config_in_one_line_with_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nname = "m"\n[[models.providers]]\nname = "p"\ntype = "opneai"\n', encoding="utf-8")
    done = await run_cli("check", "--config", str(bad))
    err = done.stderr.decode()
    assert done.returncode == 3
    assert "unknown provider type 'opneai' (did you mean 'openai'?)" in err
    assert "Traceback" not in err


async def test_check_unknown_model_lists_the_configured_ones(sim: Simulator, tmp_path: Path) -> None:
    done = await run_cli("check", "--config", str(write_config(tmp_path / "c.toml", sim)), "--model", "gpt-9")
    assert done.returncode == 3
    assert "configured models: openai-model, claude-model" in done.stderr.decode()


async def test_check_without_config_runs_the_builtin_demo() -> None:
    done = await run_cli("check")
    out = done.stdout.decode()
    assert done.returncode == 1, done.stderr  # the demo has one failing and one hanging provider
    assert "deepseek" in out and "timeout" in out and "HTTP 503" in out


async def test_bad_usage_exits_3_not_2() -> None:
    done = await run_cli("check", "--timeout", "soon")
    assert done.returncode == 3


async def test_demo_serves_and_stops_cleanly_on_sigint() -> None:
    async with cli_process("demo", "--port", "0", keep_config=True) as process:
        with trio.fail_after(30):
            buffer = await read_stdout_until(process, lambda printed: b"/readyz" in printed)
        banner = buffer.decode()
        base = next(w for w in banner.split() if w.startswith("http://") and "/v1/health/" in w).split("/v1/")[0]
        async with httpx.AsyncClient(timeout=30) as client:
            health = await client.get(f"{base}/v1/health/")
            assert health.status_code == 200
            assert health.json()["status"] == "degraded"
            assert (await client.get(f"{base}/livez")).json() == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            code = await process.wait()
        err = await read_stderr(process)
        assert code == 0, err
        assert "Traceback" not in err


async def test_json_logs_are_one_object_per_line_with_the_probe_fields(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.set_behavior("openai", mode="status", status=500)
    config = write_config(tmp_path / "c.toml", sim)
    done = await run_cli("--log-format", "json", "--log-level", "INFO", "check",
                         "--config", str(config))
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert lines, done.stderr
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    verdicts = [r for r in records if "status" in r]
    assert verdicts, records
    for record in verdicts:
        assert record["run_id"] and record["model"] and record["provider"]
        assert isinstance(record["latency_ms"], float)
    failed = [r for r in verdicts if r["status"] != "healthy"]
    assert failed and failed[0]["failure"] == "http_status" and failed[0]["level"] == "WARNING"
    assert any(r["message"].startswith("Health status: ") and r["run_id"] for r in records)


async def test_text_logs_stay_the_plain_lines_by_default(sim: Simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", sim)
    done = await run_cli("--log-level", "INFO", "check", "--config", str(config))
    text = done.stderr.decode()
    assert " | INFO  | Checking adapter: " in text and "{" not in text.splitlines()[0]


async def test_an_unknown_log_format_is_a_usage_error() -> None:
    done = await run_cli("--log-format", "xml", "check")
    assert done.returncode == 3 and b"invalid choice: 'xml'" in done.stderr
