"""No cut of upstream text may leave a recognisable piece of a key.

Upstream text is shortened before it becomes an error message: a 200 answer
that is not JSON is quoted to 80 characters, and a whole message (a custom
adapter's too) to 200. A key the upstream echoes so that it straddles one of
those cuts must disappear whole: redaction runs on the full text, then the
text is cut, and a cut that falls inside a key never leaves 4 or more of its
characters behind.

The simulator plays every adapter type (mode ``body``: a 200 with a plain
text body that quotes the key it was sent at a chosen offset); a custom
adapter reads the same answer and returns the body as its error. Each key is
placed so that ``before`` of its characters sit before the cut. Measured in
every place a verdict's text reaches: the result's error, ``report.to_dict()``,
``repr(report)`` and every log record (message and arguments, DEBUG and up);
then once through the served API (``details=true``, health+json) and the
``check`` command (table and ``--json``).

The keys start with ``rhtestkey`` and have no provider's prefix (``sk-``...),
so the pattern fallback cannot hide a broken exact-value redaction; no key
appears in a test id or an assertion message (``make test`` greps the run's
output for ``rhtestkey``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
import trio

from adapters import ADAPTER_TYPES, CallableAdapter, FailureKind, ProbeOutcome, Secret
from service import AdapterManager, HealthReport, parse_config
from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.cli import run_cli
from tests.support.configs import write_config
from tests.support.leaks import fragment
from tests.support.served import running_service

#: One key per adapter type, all of one length; no provider prefix.
KEYS = {
    "openai": "rhtestkey-Q7zX9vB2mW4pK8cN",
    "azure": "rhtestkey0Hf3Lr8TqY1dVn6Zs",
    "anthropic": "rhtestkey-Ua5Wc2Xe9Rb4Gj7M",
    "volcengine": "rhtestkey-Pm3Dk8Sv1Fy6Nq2J",
    "gemini": "rhtestkey-Tz4Hb9Cw2Lx7Ev5A",
    "ollama": "rhtestkey-Yg6Qn1Bs8Km3Wd9R",
    "openai-compatible": "rhtestkey-Jc2Vf7Mp4Xh9Ta1L",
    "cohere": "rhtestkey-gNSWPH8prVqsUeQC",
    "bedrock": "rhtestkey-tDR3zzX6hqo35uwZ",
    "vertex-ai": "rhtestkey-qxZOOHjkJQQrkaPe",
    "mistral": "rhtestkey-hMvbfrn2yzL7C5Mg",
    "groq": "rhtestkey-3PR4hLLOOxl3gV3F",
    "deepseek": "rhtestkey-GRmrCNnFZsGqgh0f",
    "openrouter": "rhtestkey-rrhbkVAhRHLfBERk",
    "together": "rhtestkey-IyDtFDBAM0gqEzpC",
    "fireworks": "rhtestkey-3N8FeKjFTrKCb0Tz",
    "xai": "rhtestkey-8BbwTKx8EqwtHmcO",
    "perplexity": "rhtestkey-JEZqgygcmtbaLGsH",
    "moonshot": "rhtestkey-7Zwqhc9jXmaoq3Gq",
    "dashscope": "rhtestkey-lpnMR6vsUW5xcJ6M",
    "zhipu": "rhtestkey-V8YWkGP1mxFyp9yI",
    "siliconflow": "rhtestkey-JX6uF68NcpP7BEXv",
    "cerebras": "rhtestkey-fqZgimdS7jnqFCiI",
    "nvidia-nim": "rhtestkey-5ydYgqTxIBAiCofj",
    "vllm": "rhtestkey-ZUljbQ6oP3Q0w7MQ",
    "lm-studio": "rhtestkey-0JTcKADr9Eu7e3xd",
    "llama-cpp": "rhtestkey-RP7PI0g63eB1h3d1",
    "azure-ai": "rhtestkey-P7keaYRtciy4Lja4",
    "custom": "rhtestkey-Ne8Rk3Gy6Dq1Zb5U",
}
KEY_LENGTH = 26
#: Every type that sends a probe ("unsupported" never does).
PROBED = [kind for kind in ADAPTER_TYPES if kind != "unsupported"]
assert set(KEYS) == {*PROBED, "custom"}
assert all(len(key) == KEY_LENGTH for key in KEYS.values())
#: Characters of the key before the cut (the rest after it): 10 offsets around it.
BEFORE = (4, 5, 6, 9, 13, 17, 21, 23, 24, 25)
#: Where the code cuts: a non-JSON 200 body is quoted to 80 characters; any
#: error message (a custom adapter's) is cut to 199 characters and an ellipsis.
BODY_CUT = 80
MESSAGE_CUT = 199
#: A run of the key's characters this long is a recognisable fragment; shorter
#: ones ("rht", "key") are everyday text.
#: Body filler: a character no key contains, no cut mark, no whitespace.
FILLER = "~"
MODEL = "frag-model"
GUARD = 20.0



def leaks(key: str, places: Iterable[tuple[str, str]]) -> dict[str, int]:
    """place -> characters of ``key`` found there, for the places where some were."""
    found: dict[str, int] = {}
    for where, text in places:
        size = fragment(key, text)
        if size:
            found[where] = max(found.get(where, 0), size)
    return found


def body_with_key_at(offset: int) -> str:
    """A plain text body: filler, the echoed key (``{key}``) at ``offset``, more filler."""
    return FILLER * offset + "{key}" + FILLER * 300


def sim_kind(kind: str) -> str:
    return "openai-compatible" if kind == "custom" else kind


class GatewayCheck(CallableAdapter):
    """A custom adapter, as user code writes one: it holds its key and quotes the upstream."""

    def __init__(self, provider: str, url: str, key: str) -> None:
        self.api_key = Secret(key)  # the manager learns it, to redact it
        self.url = url
        super().__init__(provider, self.probe, adapter_name="GatewayCheck")

    async def probe(self) -> ProbeOutcome:
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                self.url, headers={"Authorization": f"Bearer {self.api_key.reveal()}"}
            )
        if answer.status_code == 200 and answer.text.startswith("{"):
            return ProbeOutcome.ok(answer.status_code)
        return ProbeOutcome.fail(FailureKind.BAD_BODY, answer.text, http_status=answer.status_code)


def record_texts(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts: list[tuple[str, str]] = []
    for record in caplog.records:
        texts.append((f"log {record.levelname} {record.name}", formatter.format(record)))
        texts.append((f"log args {record.name}", repr(record.args)))
    return texts


def report_texts(report: HealthReport) -> list[tuple[str, str]]:
    texts = [("report.to_dict()", json.dumps(report.to_dict())), ("repr(report)", repr(report))]
    texts += [(f"error of {r.provider}", r.error or "") for r in report.results()]
    return texts


async def check_once(kind: str, before: int) -> HealthReport:
    """One run of one adapter of ``kind`` whose upstream echoes its key across the cut."""
    key = KEYS[kind]
    cut = MESSAGE_CUT if kind == "custom" else BODY_CUT
    behavior = Behavior(latency=0.0, mode="body", status=200, body=body_with_key_at(cut - before))
    sim = Simulator([SimProvider("up", sim_kind(kind), key, [MODEL], behavior)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        entry = sim.provider_entries()[0]
        if not ADAPTER_TYPES[sim_kind(kind)].lists_models:
            entry["probe"] = "completion"  # no free probe of its own
        if kind == "bedrock":
            entry["region"] = "us-east-1"
        if kind == "custom":
            # The config needs a model; the custom adapter is registered after.
            ollama = {"name": "o", "type": "ollama"}
            document = {"models": [{"name": "other", "providers": [ollama]}]}
        else:
            document = {"models": [{"name": MODEL, "providers": [entry]}]}
        config = parse_config(
            {"checks": {"adapter_timeout": 5, "recheck_timeouts": False}, **document}, env={}
        )
        manager = AdapterManager(config)
        if kind == "custom":
            manager.model_adapters.clear()
            manager.register_adapter(MODEL, GatewayCheck("up", sim.base_url("up") + "/models", key))
        async with manager:
            with trio.fail_after(GUARD):
                report = await manager.health_checker.check_all_models_with_timeout(
                    [MODEL], manager.model_adapters, GUARD
                )
        nursery.cancel_scope.cancel()
    return report


@pytest.mark.parametrize(
    "before", BEFORE, ids=[f"{n}-of-{KEY_LENGTH}-before-the-cut" for n in BEFORE]
)
@pytest.mark.parametrize("kind", list(KEYS))
async def test_no_fragment_of_a_key_survives_a_cut_of_upstream_text(
    kind: str, before: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    report = await check_once(kind, before)
    result = report.models[MODEL].results["up"]
    leaked = leaks(KEYS[kind], [*report_texts(report), *record_texts(caplog)])
    assert not leaked, f"characters of the key left after a cut, by place: {leaked}"
    assert result.status.value == "unhealthy"
    assert result.failure is FailureKind.BAD_BODY
    assert result.error and "***" in result.error  # the key was there, and was redacted


async def test_no_fragment_reaches_the_served_details_or_the_check_command(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every type at once, the worst offset (all but one character before the cut)."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # Bedrock's region, here and in `check`
    before = KEY_LENGTH - 1

    def upstream(name: str, kind: str, cut: int) -> SimProvider:
        body = body_with_key_at(cut - before)
        behavior = Behavior(latency=0.0, mode="body", status=200, body=body)
        return SimProvider(name, sim_kind(kind), KEYS[kind], [MODEL], behavior)

    # Types with a free probe: the check command's config is the simulator's entries as they are.
    listing = [kind for kind in PROBED if ADAPTER_TYPES[kind].lists_models]
    checked = [upstream(f"frag-{i}", kind, BODY_CUT) for i, kind in enumerate(listing)]
    names = tuple(p.name for p in checked)
    # The custom adapter's upstream: configured for no adapter of its own in the
    # service (the custom adapter reads it); the check command probes it too.
    providers = [*checked, upstream("frag-custom-up", "custom", MESSAGE_CUT)]
    texts: list[tuple[str, str]] = []
    async with running_service(providers=providers, models={MODEL: names}, guard=60) as service:
        url = service.sim.base_url("frag-custom-up") + "/models"
        service.manager.register_adapter(MODEL, GatewayCheck("frag-custom", url, KEYS["custom"]))
        for path in (
            "/v1/health/?details=true",
            f"/v1/health/models/{MODEL}",
            "/v1/health/?format=health+json",
        ):
            with trio.fail_after(GUARD):
                answer = await service.client.get(path)
            texts.append((f"GET {path}", answer.text))
        details = json.loads(texts[0][1])["details"][MODEL]
        config = write_config(tmp_path / "fragments.toml", service.sim, {"timeout": 10})
        for extra in ([], ["--json"]):
            done = await run_cli("--log-level", "DEBUG", "check", "--config", str(config), *extra)
            assert done.returncode == 2  # every adapter unhealthy
            texts.append((f"check {' '.join(extra)}", (done.stdout + done.stderr).decode()))
    texts += record_texts(caplog)
    leaked = {kind: found for kind, key in KEYS.items() if (found := leaks(key, texts))}
    assert not leaked, f"characters of a key left after a cut, by type and place: {leaked}"
    assert len(details) == len(listing) + 1  # and the custom adapter
    assert all("***" in d["error"] for d in details.values())  # each key was echoed
