"""The fleets the benchmarks probe, and what a correct verdict is for each adapter.

A fleet is ``n`` healthy OpenAI-kind providers at one latency, plus (for the
scale curve) one *sentinel* per simulator failure mode. Sentinels make a
benchmark that is fast because it is wrong show it: each must come back with
its own status, never healthy. They answer at half the fleet's latency and
``hang`` and ``slow_body`` get a per-provider timeout of 0.8 x latency, so
they are over before the healthy ones and the wall time still measures the
fleet (a 10 MB body takes a while to stream even when cut at 1 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Deliberately not shaped like a provider key (``sk-...``): the pattern fallback
#: cannot hide it, so the ``echo_key`` sentinel proves exact-value redaction.
API_KEY = "benchkey-sim-0123456789abcdef"
MODEL = "sim-model"
GROUP = 3  # providers per model, like the seed's 15 adapters = 5 models x 3

#: mode -> (expected probe status, expected failure kind) for this project's checker.
SENTINELS: dict[str, tuple[str, str]] = {
    "status": ("unhealthy", "http_status"),
    "rate_limited": ("unhealthy", "rate_limited"),
    "unauthorized": ("unhealthy", "auth"),
    "echo_key": ("unhealthy", "auth"),  # and the key must not appear in the error
    "malformed_json": ("unhealthy", "bad_body"),
    "html": ("unhealthy", "bad_body"),
    "wrong_shape": ("unhealthy", "bad_body"),
    "reset": ("unhealthy", "connect"),
    "huge_body": ("unhealthy", "body_too_large"),
    "hang": ("timeout", "timeout"),
    "slow_body": ("timeout", "timeout"),
}
_TIMED = ("hang", "slow_body")


def fleet_name(i: int) -> str:
    return f"fleet-{i}"


def sentinel_name(mode: str) -> str:
    return f"sentinel-{mode}"


def simulator_spec(n: int, latency: float, *, sentinels: bool) -> list[dict[str, Any]]:
    """``python -m service.testing.simulator --spec`` document for the largest fleet of a section."""
    spec = [
        {
            "name": fleet_name(i),
            "kind": "openai",
            "api_key": API_KEY,
            "models": [MODEL],
            "behavior": {"latency": latency},
        }
        for i in range(n)
    ]
    if sentinels:
        for mode in SENTINELS:
            behavior: dict[str, Any] = {"latency": latency / 2, "mode": mode}
            if mode == "status":
                behavior["status"] = 500
            if mode == "slow_body":
                behavior["trickle_interval"] = max(latency / 5, 0.01)
            spec.append(
                {
                    "name": sentinel_name(mode),
                    "kind": "openai",
                    "api_key": API_KEY,
                    "models": [MODEL],
                    "behavior": behavior,
                }
            )
    return spec


@dataclass(frozen=True, slots=True)
class Target:
    """One adapter of a benchmark config, as both implementations see it."""

    model: str
    provider: str
    base_url: str
    timeout: float | None  # per-adapter timeout; None = the run's adapter_timeout
    expected: tuple[str, str]  # (status, failure); ("healthy", "") for the fleet


def roots(fleet_url: str, sentinel_url: str) -> str:
    """One ``root_url`` for a fleet and its sentinels served by two upstreams.

    The scale curve's healthy fleet is answered by the lean upstream
    (``benchmarks.fast_upstream``) and its sentinels by the full simulator; every
    process given a job's ``root_url`` (ours, the seed design) calls :func:`targets`
    with it, so both get the same split. URLs hold no space.
    """
    return f"{fleet_url} {sentinel_url}"


def targets(root_url: str, n: int, latency: float, *, sentinels: bool) -> list[Target]:
    """The first ``n`` fleet providers in models of three, then the sentinels' model.

    ``root_url`` is one upstream's root URL, or :func:`roots` of two (fleet, sentinels).
    """
    root_url, _, sentinel_url = root_url.partition(" ")
    sentinel_url = sentinel_url or root_url
    out = [
        Target(
            model=f"model-{i // GROUP}",
            provider=fleet_name(i),
            base_url=f"{root_url}/{fleet_name(i)}/v1",
            timeout=None,
            expected=("healthy", ""),
        )
        for i in range(n)
    ]
    if sentinels:
        for mode, expected in SENTINELS.items():
            out.append(
                Target(
                    model="sentinels",
                    provider=sentinel_name(mode),
                    base_url=f"{sentinel_url}/{sentinel_name(mode)}/v1",
                    timeout=round(0.8 * latency, 3) if mode in _TIMED else None,
                    expected=expected,
                )
            )
    return out


def config_document(
    tabs: list[Target],
    *,
    timeout: float,
    adapter_timeout: float,
    recheck: bool = False,
    port: int = 0,
    workers: int | str | None = None,
    shard_threshold: int | None = None,
) -> dict[str, Any]:
    """The ``parse_config`` document for ``tabs`` (this project's checker).

    ``workers`` and ``shard_threshold`` set ``[checks]``'s keys of the same names
    (worker processes for large fleets); None leaves the default.
    """
    models: dict[str, list[dict[str, Any]]] = {}
    for t in tabs:
        table: dict[str, Any] = {
            "name": t.provider,
            "type": "openai",
            "base_url": t.base_url,
            "api_key": API_KEY,
            "model": MODEL,
        }
        if t.timeout is not None:
            table["timeout"] = t.timeout
        models.setdefault(t.model, []).append(table)
    return {
        "checks": {
            "timeout": timeout,
            "model_timeout": timeout,
            "adapter_timeout": adapter_timeout,
            "recheck_timeouts": recheck,
            **({"workers": workers} if workers is not None else {}),
            **({"shard_threshold": shard_threshold} if shard_threshold is not None else {}),
        },
        # anonymous_min_interval = 0: every GET /v1/health/ measured is a check, never the
        # answer the server keeps for anonymous callers (5 s by default).
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "max_timeout": max(120.0, timeout),
            "anonymous_min_interval": 0,
        },
        "models": [{"name": name, "providers": p} for name, p in models.items()],
    }


def _queued_out(expected: tuple[str, str], status: str, failure: str) -> bool:
    """A probe whose deadline passed while it queued for a slot (probe limiter,
    socket budget) is a timeout of kind ``resource``: we ran out of capacity
    before learning anything about the provider. For a sentinel that would have
    timed out anyway (hang, trickled body), that verdict is right too.
    """
    return expected == ("timeout", "timeout") and (status, failure) == ("timeout", "resource")


def judge(
    tabs: list[Target], verdicts: dict[str, tuple[str, str, str]], *, strict: bool
) -> tuple[int, list[str]]:
    """Count correct verdicts; ``verdicts``: provider -> (status, failure, error).

    ``strict`` (this project): status and failure kind must both match, and
    an echoed key must have been redacted. Otherwise (the seed baseline, which
    only says healthy or unhealthy): healthy exactly where expected.
    """
    correct = 0
    wrong: list[str] = []
    for t in tabs:
        got = verdicts.get(t.provider)
        if got is None:
            wrong.append(f"{t.provider}: no verdict")
            continue
        status, failure, error = got
        if strict:
            ok = (status, failure or "") == t.expected or _queued_out(t.expected, status, failure)
            if ok and t.provider == sentinel_name("echo_key"):
                ok = API_KEY not in error and "***" in error
        else:
            ok = (status == "healthy") == (t.expected[0] == "healthy")
        if ok:
            correct += 1
        else:
            wrong.append(
                f"{t.provider}: expected {'/'.join(filter(None, t.expected))}, got {status}/{failure}"
            )
    return correct, wrong
