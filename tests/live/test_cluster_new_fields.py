"""Cluster mode carries a result's listed model ids, billed tokens and budget fallback, checked.

A peer's ``listed_models`` (a wildcard's list probe), ``tokens`` (a paid
probe's usage) and ``budget_fallback`` reach every replica as the lease holder
saw them; a message with a poisoned one is dropped and counted like any other
bad field. The Redis cases use a throwaway ``redis-server`` on a free port and
end each burst with a valid *marker* result (Redis delivers one publisher's
messages in order), so nothing waits for time to pass.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio

from adapters import MAX_LISTED
from service.engine.report import ProbeResult, ProbeStatus
from service.live.cluster import (
    MAX_LISTED_CHARS,
    MAX_PAYLOAD,
    MAX_PROBE_TOKENS,
    result_from_json,
    result_to_json,
)
from tests.support.redis import RedisServer, needs_redis, publish, replica


def listed(count: int = MAX_LISTED, chars: int = MAX_LISTED_CHARS) -> tuple[str, ...]:
    """``count`` distinct model ids of ``chars`` characters each."""
    return tuple(f"org/model-{i:04d}-".ljust(chars, "x") for i in range(count))


def result(**changes: Any) -> ProbeResult:
    fields: dict[str, Any] = {
        "model": "m1", "provider": "p1", "adapter": "OpenAIAdapter",
        "status": ProbeStatus.HEALTHY, "latency_ms": 12.5, "checked_at": time.time(),
        "http_status": 200,
    }
    fields.update(changes)
    return ProbeResult(**fields)


def message(**changes: Any) -> dict[str, Any]:
    """A valid shared result (what another instance publishes) with ``changes``."""
    data: dict[str, Any] = json.loads(result_to_json(result(), instance="peer", token=7))
    data.update(changes)
    return data


def poisons() -> dict[str, dict[str, Any]]:
    """Each bad value of the three fields, by name; any of them would reach the state if taken."""
    return {
        "listed_models a string": message(listed_models="gpt-4o"),
        "listed_models an object": message(listed_models={"id": "gpt-4o"}),
        "listed_models 1001 entries": message(listed_models=list(listed(MAX_LISTED + 1, 20))),
        "listed_models a number inside": message(listed_models=["gpt-4o", 5]),
        "listed_models a null inside": message(listed_models=["gpt-4o", None]),
        "listed_models a list inside": message(listed_models=[["gpt-4o"]]),
        "listed_models an empty id": message(listed_models=[""]),
        "listed_models an id too long": message(listed_models=["m" * (MAX_LISTED_CHARS + 1)]),
        "listed_models a newline": message(listed_models=["gpt-4o\nWARNING forged line"]),
        "listed_models a NUL": message(listed_models=["gpt\x00-4o"]),
        "listed_models a bidi override": message(listed_models=["gpt-4o\u202e"]),
        "listed_models a zero-width space": message(listed_models=["gpt\u200b-4o"]),
        "tokens negative": message(tokens=-1),
        "tokens too many": message(tokens=MAX_PROBE_TOKENS + 1),
        "tokens 10**400": message(tokens=10**400),
        "tokens a float": message(tokens=1.5),
        "tokens a string": message(tokens="9"),
        "tokens true": message(tokens=True),
        "budget_fallback a string": message(budget_fallback="true"),
        "budget_fallback a number": message(budget_fallback=1),
        "budget_fallback a list": message(budget_fallback=[True]),
    }


# -- what is shared comes back the same ------------------------------------------------------------


def test_the_new_fields_round_trip() -> None:
    for each in (
        result(tokens=0, budget_fallback=True),
        result(tokens=MAX_PROBE_TOKENS, listed_models=("gpt-4o", "gpt-4o-mini", "模型/中文-1")),
        result(model="m1", provider="p1", listed_models=()),
        result(listed_models=listed()),  # 1,000 ids of the longest length taken
        result(),
    ):
        payload = result_to_json(each, instance="i", token=1)
        assert len(payload) <= MAX_PAYLOAD
        assert result_from_json(payload) == (each, "i", 1)


def test_a_result_from_before_the_fields_still_loads() -> None:
    data = message()
    for name in ("tokens", "listed_models", "budget_fallback"):
        del data[name]
    taken, _, _ = result_from_json(json.dumps(data))
    assert (taken.tokens, taken.listed_models, taken.budget_fallback) == (None, None, False)


def test_each_poisoned_value_is_refused() -> None:
    for name, data in poisons().items():
        with pytest.raises(ValueError, match="not a shared result") as refused:
            result_from_json(json.dumps(data))
        assert "forged" not in str(refused.value), name  # the reason never quotes the value


def test_what_a_peer_would_refuse_is_left_out_when_sharing_not_the_whole_result() -> None:
    odd = result(tokens=MAX_PROBE_TOKENS + 1, listed_models=("gpt-4o", "bad\nid", "x" * 300, "o3"))
    taken, _, _ = result_from_json(result_to_json(odd, instance="i", token=1))
    assert (taken.tokens, taken.listed_models) == (None, ("gpt-4o", "o3"))


def test_a_list_of_long_non_ascii_ids_is_cut_to_fit_the_payload() -> None:
    wide = tuple(f"{i:04d}".ljust(MAX_LISTED_CHARS, "\U0001f600") for i in range(MAX_LISTED))
    payload = result_to_json(result(listed_models=wide), instance="i", token=1)
    assert len(payload) <= MAX_PAYLOAD
    taken, _, _ = result_from_json(payload)
    assert taken.listed_models is not None and 0 < len(taken.listed_models) < MAX_LISTED
    assert taken.listed_models == wide[: len(taken.listed_models)]


# -- over Redis: the fields reach a replica; poison changes nothing and is counted ---------------


@needs_redis
async def test_a_peers_new_fields_reach_a_replica_and_poisoned_ones_are_counted(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a = replica(redis.url, "a")
    await nursery.start(a.run)
    bad = poisons()
    marker = message(instance="marker", provider="p2", listed_models=list(listed()), tokens=9,
                     budget_fallback=True)
    await publish(redis.url, *(json.dumps(data).encode() for data in bad.values()),
                  json.dumps(marker).encode())
    with trio.fail_after(10):
        await a.state.changes.wait_value(lambda _: a.state.get("m1", "p2") is not None)
    assert a.state.get("m1", "p1") is None  # no poisoned message was taken
    assert a.rejected == len(bad) and a.status()["rejected"] == len(bad)
    current = a.state.get("m1", "p2")
    assert current is not None
    latest = current.latest
    assert (latest.listed_models, latest.tokens, latest.budget_fallback) == (listed(), 9, True)
