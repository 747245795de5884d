"""Keys never leave the process: not in a response, a log line, an exception or a repr.

One representative workload — every endpoint, with and without the auth
token, every failure mode of every provider kind (including upstreams that
echo the key back), an internal error whose message quotes a key, bad
configs, and the CLI at DEBUG — is recorded in full, then grepped for the
test keys. The keys are deliberately *not* shaped like provider keys
(``sk-...``), so only exact-value redaction can hide them, not the pattern
fallback.

Every test key starts with ``rhtestkey`` and the token with ``rhtesttoken``:
CI greps a whole test run's DEBUG log for those prefixes too (``.ci/run``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from service import ConfigError, HealthReport, load_config, parse_config
from service.api.app import EXTENSION_KEY
from service.testing.simulator import MODES, Behavior, SimProvider
from tests.support.cli import run_cli
from tests.support.configs import write_config
from tests.support.served import GUARD, Service, deadline_bound, running_service

KEYS = {
    "openai": "rhtestkey-openai-4c1e9a",
    "azure": "rhtestkey0azure0f00dfeedbeef12345",
    "anthropic": "rhtestkey-anthropic-77ab",
    "volcengine": "rhtestkey-6f1d2e3a-volc",
    "gemini": "rhtestkey-gemini-55aa",
    "compat": "rhtestkey-compat-0909",
}
TOKEN = "rhtesttoken-2b8f6c1d9e0a4b7c"
SECRETS = [*KEYS.values(), TOKEN]

PROVIDERS = [
    SimProvider("openai", "openai", KEYS["openai"], ["gpt-4"], Behavior(latency=0.0)),
    SimProvider("azure", "azure", KEYS["azure"], ["gpt-4"], Behavior(latency=0.0)),
    SimProvider("anthropic", "anthropic", KEYS["anthropic"], ["claude-3"], Behavior(latency=0.0)),
    SimProvider("volcengine", "volcengine", KEYS["volcengine"], ["doubao"], Behavior(latency=0.0)),
    SimProvider("gemini", "gemini", KEYS["gemini"], ["gemini-pro"], Behavior(latency=0.0)),
    SimProvider("compat", "openai-compatible", KEYS["compat"], ["doubao"], Behavior(latency=0.0)),
]
MODELS = {
    "gpt-4": ("openai", "azure"),
    "claude-3": ("anthropic",),
    "doubao": ("volcengine", "compat"),
    "gemini-pro": ("gemini",),
}
#: Modes whose probes end at the adapter's deadline (kept to one cheap request).
SLOW_MODES = {"hang", "slow_body"}
#: Every provider's deadline: no answer of the workload may take longer (plus
#: a busy machine's slack), so a deadline applied three times too late fails.
ADAPTER_TIMEOUT = 1.0


class Transcript:
    """Everything the workload made visible, with where it came from."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def add(self, where: str, text: object) -> None:
        self.entries.append((where, text if isinstance(text, str) else repr(text)))

    def add_response(self, where: str, response: httpx.Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.add(where, f"{response.status_code}\n{headers}\n\n{response.text}")

    def leaks(self) -> list[str]:
        return [
            f"{where}: contains {secret[:14]}..."
            for where, text in self.entries
            for secret in SECRETS
            if secret in text
        ]


async def call(
    service: Service, transcript: Transcript, path: str, *, token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    start = trio.current_time()
    with trio.fail_after(GUARD * 2):  # only stops a hang
        response = await service.client.get(path, headers=headers)
    elapsed = trio.current_time() - start
    # Hanging and trickling upstreams end at their deadline; nothing else waits.
    assert elapsed < deadline_bound(ADAPTER_TIMEOUT), (path, elapsed)
    transcript.add_response(f"GET {path} (token={'yes' if token else 'no'})", response)
    return response


async def every_endpoint(service: Service, transcript: Transcript, mode: str) -> None:
    """All routes, as an operator (token), an anonymous dashboard and a wrong token."""
    cheap = mode not in SLOW_MODES
    await call(service, transcript, "/v1/health/", token=TOKEN)
    if cheap:
        await call(service, transcript, "/v1/health/?use_concurrent=false&details=true", token=TOKEN)
        await call(service, transcript, "/v1/health/models", token=TOKEN)
        await call(service, transcript, "/v1/health/models/gpt-4", token=TOKEN)
        await call(service, transcript, "/v1/health/models/doubao")
        await call(service, transcript, "/v1/health/")
        await call(service, transcript, "/v1/health/", token="rhtesttoken-wrong-wrong-wrong")
        await call(service, transcript, "/v1/health/performance")
    if mode in {"ok", "echo_key"}:
        await call(service, transcript, "/v1/health/performance", token=TOKEN)
    await call(service, transcript, "/livez")
    await call(service, transcript, "/readyz")
    # Metric labels are names only: the exposition after every mode must not
    # carry a key (the transcript is grepped for them, as the other answers).
    await call(service, transcript, "/metrics", token=TOKEN)
    await call(service, transcript, "/metrics")  # 401 without the token
    await call(service, transcript, "/v1/health/?format=health+json", token=TOKEN)


def record_reprs(service: Service, transcript: Transcript, report: HealthReport | None) -> None:
    state = service.app.extensions[EXTENSION_KEY]
    config = state.config
    transcript.add("repr(config)", repr(config))
    transcript.add("str(config)", str(config))
    transcript.add("repr(server config)", repr(config.server))
    transcript.add("repr(providers)", repr([p for m in config.models for p in m.providers]))
    transcript.add("repr(manager)", repr(service.manager))
    transcript.add("repr(adapters)", repr(service.manager.model_adapters))
    transcript.add("vars(adapters)", [vars(a) for _, a in service.manager.all_adapters()])
    transcript.add("repr(checker)", repr(service.manager.health_checker))
    transcript.add("repr(app state)", repr(state))
    transcript.add("repr(auth)", repr(state.auth))
    if report is not None:
        transcript.add("repr(report)", repr(report))
        transcript.add("report.to_dict()", report.to_dict())


def record_config_errors(transcript: Transcript, tmp_path: Path) -> None:
    """Config mistakes around secrets: the message names the key, never the value."""
    provider = {"name": "p", "type": "openai"}
    documents = [
        {"models": [{"name": "m", "providers": [{**provider, "api_key": [KEYS["openai"]]}]}]},
        {"models": [{"name": "m", "providers": [
            {**provider, "api_key": KEYS["openai"], "api_key_env": "RH_SECRET_ENV"}
        ]}]},
        {"server": {"auth_token": [TOKEN]}, "models": [{"name": "m", "providers": [provider]}]},
        {"server": {"auth_token": TOKEN[:12]}, "models": [{"name": "m", "providers": [provider]}]},
        {"server": {"auth_token": TOKEN, "auth_token_env": "RH_TOKEN"},
         "models": [{"name": "m", "providers": [provider]}]},
        {"server": {"auth_token_env": "RH_TOKEN"}, "checks": {"timeot": KEYS["azure"]},
         "models": [{"name": "m", "providers": [provider]}]},
    ]
    env = {"RH_SECRET_ENV": KEYS["openai"], "RH_TOKEN": TOKEN[:10] + " spaces"}
    for i, document in enumerate(documents):
        with pytest.raises(ConfigError) as info:
            parse_config(document, source=f"<doc {i}>", env=env)
        transcript.add(f"ConfigError {i}", str(info.value))
        transcript.add(f"repr(ConfigError {i})", repr(info.value))
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text(f'[server]\nauth_token = "{TOKEN}\n', encoding="utf-8")  # unterminated
    with pytest.raises(ConfigError) as info:
        load_config(bad_toml)
    transcript.add("ConfigError (invalid TOML)", str(info.value))


async def test_keys_never_appear_in_any_output_of_a_representative_workload(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    transcript = Transcript()
    first_report: HealthReport | None = None
    async with running_service(
        checks={"timeout": 5, "model_timeout": 5, "adapter_timeout": ADAPTER_TIMEOUT,
                "recheck_timeouts": False},
        server={"auth_token": TOKEN},
        providers=PROVIDERS,
        models=MODELS,
        guard=120,
    ) as service:
        sim = service.sim
        # Healthy first: proves every key really was sent and accepted.
        response = await call(service, transcript, "/v1/health/", token=TOKEN)
        assert response.json()["status"] == "healthy", response.text
        first_report = await service.manager.health_checker.check_all_models_with_timeout(
            service.manager.get_available_models(), service.manager.model_adapters
        )
        for mode in MODES:
            for name in KEYS:
                # retry_after=0: a held 429 would keep the next modes from probing.
                sim.set_behavior(
                    name, mode=mode, status=500, trickle_interval=0.05, retry_after=0
                )
            await every_endpoint(service, transcript, mode)
            if mode == "echo_key":
                # The upstreams did quote the keys: redaction, not luck, hid them.
                details = (await call(service, transcript, "/v1/health/", token=TOKEN)).json()
                errors = [d["error"] for m in details["details"].values() for d in m.values()]
                assert all("***" in error for error in errors), errors
        for name in KEYS:
            sim.set_behavior(name, mode="ok")

        # An internal error whose message (and cause) quote keys.
        checker = service.manager.health_checker
        original = checker.check_all_models_with_timeout

        async def broken(*args: Any, **kwargs: Any) -> HealthReport:
            try:
                raise ValueError(f"upstream rejected {KEYS['azure']}")
            except ValueError as cause:
                raise RuntimeError(f"run failed with token {TOKEN}") from cause

        checker.check_all_models_with_timeout = broken  # type: ignore[method-assign]
        response = await call(service, transcript, "/v1/health/", token=TOKEN)
        assert response.status_code == 500
        checker.check_all_models_with_timeout = original  # type: ignore[method-assign]
        record_reprs(service, transcript, first_report)

    record_config_errors(transcript, tmp_path)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        transcript.add(f"log {record.name}:{record.levelname}", formatter.format(record))
        transcript.add(f"log args {record.name}", record.args)
    assert any("internal error" in text for where, text in transcript.entries if where.startswith("log"))
    assert not transcript.leaks(), "\n".join(transcript.leaks())


async def test_the_cli_at_debug_level_prints_no_key_even_when_upstreams_echo_them(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        from service.testing.simulator import Simulator

        sim = Simulator(PROVIDERS)
        await nursery.start(sim.serve)
        for name in KEYS:
            sim.set_behavior(name, mode="echo_key")
        config = write_config(tmp_path / "echo.toml", sim, {"timeout": 5})
        outputs = []
        for extra in ([], ["--json"]):
            done = await run_cli("--log-level", "DEBUG", "check", "--config", str(config), *extra)
            assert done.returncode == 2, done.stderr.decode()  # every provider: 401
            outputs.append(done.stdout.decode() + done.stderr.decode())
        nursery.cancel_scope.cancel()
    text = "\n".join(outputs)
    assert "401" in text and "***" in text
    leaked = [secret[:14] for secret in SECRETS if secret in text]
    assert not leaked, leaked
