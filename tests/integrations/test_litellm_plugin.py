"""The LiteLLM plugin against a loopback router-health stand-in this file controls.

Every way router-health can let the plugin down (not listening, too slow, 500,
an old answer, a full queue) must leave LiteLLM's choice and its calls as they
would be without the plugin; a 304 keeps the set it confirms.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.config import parse_litellm_config
from service.integrations.client import (
    ClientSettings,
    Observation,
    RouterHealthClient,
    parse_route,
)
from service.integrations.litellm import DeploymentNames, LiteLLMPlugin, observation_of
from tests.support import eventually
from tests.support.litellm import require_litellm
from tests.support.served import free_port

TOKEN = "observe-token-0123456789"
MODEL_LIST: list[dict[str, Any]] = [
    {"model_name": "gpt-4", "litellm_params": {"model": "openai/gpt-4", "api_base": "http://10.0.0.1/v1", "api_key": "sk-a"}},
    {"model_name": "gpt-4", "litellm_params": {"model": "openai/gpt-4", "api_base": "http://10.0.0.1/v1", "api_key": "sk-b"}},
    {"model_name": "gpt-4", "litellm_params": {"model": "openai/gpt-4", "api_key": "sk-c"}, "model_info": {"id": "primary"}},
]
#: The names router-health gives MODEL_LIST's deployments, in order.
NAMES = ("openai-compatible@10.0.0.1", "openai-compatible@10.0.0.1-2", "primary")


def deployments() -> list[dict[str, Any]]:
    """MODEL_LIST as LiteLLM's Router hands it to a filter: ids filled in, defaults added."""
    return [
        {
            "model_name": entry["model_name"],
            "litellm_params": {**entry["litellm_params"], "use_in_pass_through": False},
            "model_info": {"id": entry.get("model_info", {}).get("id", f"hash-{i}"), "db_model": False},
        }
        for i, entry in enumerate(MODEL_LIST)
    ]


def ids(kept: list[dict[str, Any]]) -> list[str]:
    return [d["model_info"]["id"] for d in kept]


def route_body(excluded: tuple[str, ...] = (), panic: bool = False) -> dict[str, Any]:
    return {
        "model": "gpt-4",
        "panic": panic,
        "deployments": [{"provider": n, "status": "healthy"} for n in NAMES if n not in excluded],
        "excluded": [{"provider": n, "status": "unhealthy"} for n in excluded],
    }


# -- a router-health stand-in ---------------------------------------------------------


@dataclass
class FakeRouterHealth:
    """``GET /v1/route/{model}`` and ``POST /v1/health/observations``, answering as told."""

    route: dict[str, Any] = field(default_factory=route_body)
    etag: str = '"v1"'
    route_mode: str = "ok"  # ok | hang | error
    observe_mode: str = "ok"  # ok | hang | error | busy
    reject_first: bool = False  # refuse the first observation of each batch
    route_requests: list[dict[str, str]] = field(default_factory=list)  # their headers
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    hanging: int = 0  # requests being held
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


def handler_for(fake: FakeRouterHealth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def hang(self) -> None:
            fake.hanging += 1
            fake.release.wait(30)
            self.answer(503, {"error": "released"})

        def do_GET(self) -> None:
            if not self.path.startswith("/v1/route/"):
                return self.answer(404, {"error": "not_found"})
            fake.route_requests.append({k.lower(): v for k, v in self.headers.items()})
            if fake.route_mode == "hang":
                return self.hang()
            if fake.route_mode == "error":
                return self.answer(500, {"error": "internal", "message": "boom"})
            if self.headers.get("if-none-match") == fake.etag:
                return self.answer(304, headers={"etag": fake.etag})
            return self.answer(200, fake.route, {"etag": fake.etag})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            fake.authorizations.append(self.headers.get("authorization", ""))
            if fake.observe_mode == "hang":
                return self.hang()
            if fake.observe_mode == "error":
                return self.answer(500, {"error": "internal", "message": "boom"})
            if fake.observe_mode == "busy":
                return self.answer(429, {"error": "rate_limited"}, {"retry-after": "1"})
            batch = body["observations"]
            fake.batches.append(batch)
            rejected = [{"index": 0, "error": "unknown provider"}] if fake.reject_first else []
            self.answer(200, {"accepted": len(batch) - len(rejected), "rejected": rejected})

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeRouterHealth]:
    state = FakeRouterHealth()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def clients() -> Iterator[list[RouterHealthClient]]:
    """Clients a test made, closed after it (their threads stopped)."""
    made: list[RouterHealthClient] = []
    yield made
    for client in made:
        client.close(timeout=5)


def settings(url: str, **changes: Any) -> ClientSettings:
    fast = {"observe_token": TOKEN, "poll_interval": 0.05, "flush_interval": 0.05,
            "send_timeout": 1.0, "max_backoff": 0.2}
    return ClientSettings(url=url, **{**fast, **changes})


def make_plugin(clients: list[RouterHealthClient], url: str, **changes: Any) -> LiteLLMPlugin:
    client = RouterHealthClient(settings(url, **changes))
    clients.append(client)
    return LiteLLMPlugin(client, model_list=MODEL_LIST, env={})


def success(deployment_id: str = "primary", **logged: Any) -> dict[str, Any]:
    """The kwargs LiteLLM passes its success hooks, as far as the plugin reads them."""
    return {
        "standard_logging_object": {"model_group": "gpt-4", "model_id": deployment_id, **logged},
        "litellm_params": {"metadata": {"model_group": "gpt-4"}},
    }


START = datetime.datetime(2026, 1, 1, 12, 0, 0)
END = START + datetime.timedelta(milliseconds=250)


# -- the routable set: used when fresh, LiteLLM's own list otherwise ------------------------


async def test_the_deployments_router_health_excludes_are_left_out(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    fake.route = route_body(excluded=(NAMES[1],))
    plugin = make_plugin(clients, fake.url)
    # The first call has no set yet: LiteLLM's list as it is; the set arrives in the background.
    assert ids(plugin.filter("gpt-4", deployments())) == ["hash-0", "hash-1", "primary"]
    await eventually(lambda: ids(plugin.filter("gpt-4", deployments())) == ["hash-0", "primary"])
    assert plugin.filtered_out >= 1


async def test_a_304_keeps_the_set_it_confirms(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    fake.route = route_body(excluded=("primary",))
    plugin = make_plugin(clients, fake.url, stale_after=0.5)
    plugin.filter("gpt-4", deployments())
    await eventually(lambda: plugin.client.stats().route_not_modified >= 20)  # 1 s of 304s
    assert plugin.client.stats().route_answers == 1
    assert all(r.get("if-none-match") == '"v1"' for r in fake.route_requests[1:])
    assert ids(plugin.filter("gpt-4", deployments())) == ["hash-0", "hash-1"]


async def test_router_health_not_listening_leaves_litellm_s_list_unchanged(
    clients: list[RouterHealthClient],
) -> None:
    plugin = make_plugin(clients, f"http://127.0.0.1:{free_port()}")
    given = deployments()
    assert plugin.filter("gpt-4", given) is given
    await eventually(lambda: plugin.client.stats().route_failures >= 2)
    assert plugin.filter("gpt-4", given) is given


async def test_a_slow_router_health_never_holds_a_call_and_is_not_followed(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    fake.route_mode = "hang"
    plugin = make_plugin(clients, fake.url, route_timeout=0.2)
    given = deployments()
    assert plugin.filter("gpt-4", given) is given
    await eventually(lambda: fake.hanging >= 1)
    # A route request is being held right now, and the filter still answers at once.
    assert plugin.filter("gpt-4", given) is given
    await eventually(lambda: plugin.client.stats().route_failures >= 1)  # timed out
    assert plugin.filter("gpt-4", given) is given


async def test_a_500_drops_the_old_set(fake: FakeRouterHealth, clients: list[RouterHealthClient]) -> None:
    fake.route = route_body(excluded=("primary",))
    plugin = make_plugin(clients, fake.url)
    plugin.filter("gpt-4", deployments())
    await eventually(lambda: len(plugin.filter("gpt-4", deployments())) == 2)
    fake.route_mode = "error"
    await eventually(lambda: len(plugin.filter("gpt-4", deployments())) == 3)
    assert plugin.client.stats().route_failures >= 1


async def test_a_set_older_than_stale_after_is_not_followed(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    fake.route = route_body(excluded=("primary",))
    plugin = make_plugin(clients, fake.url, stale_after=0.3)
    plugin.filter("gpt-4", deployments())
    await eventually(lambda: len(plugin.filter("gpt-4", deployments())) == 2)
    fake.route_mode = "hang"  # no answer confirms the set any more
    await eventually(lambda: len(plugin.filter("gpt-4", deployments())) == 3)


async def test_a_client_thread_that_dies_of_a_bug_stays_down_and_serves_no_set(
    fake: FakeRouterHealth, clients: list[RouterHealthClient], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def a_bug(self: RouterHealthClient, http: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(RouterHealthClient, "_poll_loop", a_bug)
    client = RouterHealthClient(settings(fake.url))
    clients.append(client)
    assert client.route_set("gpt-4") is None
    await eventually(lambda: "router-health client stopped" in caplog.text)
    for _ in range(3):
        assert client.route_set("gpt-4") is None
    assert caplog.text.count("router-health client stopped") == 1
    assert client._thread is not None and not client._thread.is_alive()  # not started again


def test_freshness_is_measured_from_the_last_confirmation() -> None:
    route = parse_route("gpt-4", route_body(), '"v1"', now=100.0)
    assert route is not None
    assert route.fresh(110.0, stale_after=10.0)
    assert not route.fresh(110.5, stale_after=10.0)


async def test_a_set_excluding_every_candidate_leaves_the_list_unchanged(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    fake.route = route_body(excluded=(NAMES[0], NAMES[1]))
    plugin = make_plugin(clients, fake.url)
    only_excluded = deployments()[:2]
    plugin.filter("gpt-4", only_excluded)
    await eventually(lambda: plugin.client.stats().route_answers >= 1)
    assert ids(plugin.filter("gpt-4", deployments())) == ["primary"]  # the set is in use
    assert plugin.filter("gpt-4", only_excluded) is only_excluded  # never emptied


def test_a_deployment_router_health_cannot_check_is_not_left_out() -> None:
    body = route_body(excluded=(NAMES[0], NAMES[1]))
    body["excluded"][1]["status"] = "unsupported"  # no adapter for it: no verdict either
    route = parse_route("gpt-4", body, None, 0.0)
    assert route is not None and route.excluded == {NAMES[0]}


def test_answers_not_shaped_like_a_routable_set_are_refused() -> None:
    assert parse_route("gpt-4", {"deployments": "all"}, None, 0.0) is None
    assert parse_route("gpt-4", {"deployments": [{"provider": 3}]}, None, 0.0) is None
    assert parse_route("gpt-4", {"deployments": [], "panic": "yes"}, None, 0.0) is None
    assert parse_route("gpt-4", [], None, 0.0) is None


def test_models_and_deployments_router_health_does_not_name_pass_through() -> None:
    client = RouterHealthClient(settings("http://127.0.0.1:9"))
    plugin = LiteLLMPlugin(client, model_list=MODEL_LIST, env={})
    unknown = [{"model_name": "other", "litellm_params": {"model": "x"}, "model_info": {"id": "x"}}]
    assert plugin.filter("other", unknown) is unknown
    assert plugin.filter("gpt-4", []) == []
    assert client.stats().route_failures == 0  # nothing was asked for


# -- provider names: router-health's own ----------------------------------------------


def test_deployments_get_the_names_router_health_gives_the_same_model_list() -> None:
    yaml_text = json.dumps({"model_list": MODEL_LIST})  # JSON is YAML
    config = parse_litellm_config(yaml_text, env={})
    assert tuple(p.name for p in config.models[0].providers) == NAMES
    names = DeploymentNames(MODEL_LIST, env={})
    assert [names.name("gpt-4", d) for d in deployments()] == list(NAMES)


def test_a_deployment_matching_several_entries_is_named_by_none() -> None:
    names = DeploymentNames(MODEL_LIST, env={})
    keyless = {"litellm_params": {"model": "openai/gpt-4", "api_base": "http://10.0.0.1/v1"}}
    assert names.name("gpt-4", {**keyless, "model_info": {"id": "unseen"}}) is None


def test_deployments_told_apart_only_by_a_key_from_the_environment_get_their_names() -> None:
    model_list = [
        {"model_name": "m", "litellm_params": {"model": "openai/m", "api_key": f"os.environ/KEY_{n}"}}
        for n in "AB"
    ]
    names = DeploymentNames(model_list, env={"KEY_A": "sk-a", "KEY_B": "sk-b"})
    resolved = {"model": "openai/m", "api_key": "sk-b"}  # as LiteLLM's Router holds it
    assert names.name("m", {"litellm_params": resolved, "model_info": {"id": "h"}}) == "openai-2"


def test_a_deployment_id_seen_by_the_filter_names_its_outcomes() -> None:
    names = DeploymentNames(MODEL_LIST, env={})
    names.name("gpt-4", deployments()[1])  # learns hash-1
    observation = observation_of(success("hash-1"), True, START, END, names)
    assert observation is not None and observation.provider == NAMES[1]


def test_environment_references_resolve_as_router_health_resolves_them() -> None:
    model_list = [{"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "os.environ/BASE"}}]
    names = DeploymentNames(model_list, env={"BASE": "http://10.9.9.9:8000/v1"})
    assert names.name("m", {"litellm_params": {"api_base": "http://10.9.9.9:8000/v1"}}) == (
        "openai-compatible@10.9.9.9:8000"
    )


# -- outcomes -> observations --------------------------------------------------------------


def test_a_success_is_an_observation_with_its_latency_and_time() -> None:
    names = DeploymentNames(MODEL_LIST, env={})
    observation = observation_of(success(), True, START, END, names)
    assert observation == Observation(
        "gpt-4", "primary", True, latency_ms=250.0, at=END.timestamp()
    )


class Timeout(Exception):  # named as LiteLLM's and OpenAI's
    status_code = 408


class ServiceUnavailableError(Exception):
    status_code = 503


class InternalServerError(Exception):
    status_code = 500


class BadRequestError(Exception):
    status_code = 400


@pytest.mark.parametrize(
    ("exception", "status", "kind"),
    [
        (Timeout("Request timed out"), None, "timeout"),
        (ServiceUnavailableError("upstream 503"), 503, "http_status"),
        (InternalServerError("OpenAIException - Connection error."), None, "connect"),
        (RuntimeError("no status at all"), None, "exception"),
    ],
)
def test_a_failure_says_its_status_and_kind(exception: Exception, status: int | None, kind: str) -> None:
    names = DeploymentNames(MODEL_LIST, env={})
    observation = observation_of({**success(), "exception": exception}, False, START, END, names)
    assert observation is not None
    assert (observation.ok, observation.status_code, observation.error_kind) == (False, status, kind)


def test_what_says_nothing_about_a_deployment_is_not_reported() -> None:
    names = DeploymentNames(MODEL_LIST, env={})
    bad_request = {**success(), "exception": BadRequestError("context too long")}
    assert observation_of(bad_request, False, START, END, names) is None
    assert observation_of({**success(), "cache_hit": True}, True, START, END, names) is None
    assert observation_of({"standard_logging_object": {"model_id": "x"}}, True, START, END, names) is None
    assert observation_of(success("not-ours"), True, START, END, names) is None


# -- traffic reports: batched, bounded, never in the way ----------------------------------------


async def test_outcomes_reach_router_health_in_batches_with_the_token(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    plugin = make_plugin(clients, fake.url, batch_size=4)
    for _ in range(10):
        plugin.record(success(), True, START, END)
    await eventually(lambda: plugin.client.stats().sent == 10)
    assert all(len(batch) <= 4 for batch in fake.batches)
    assert set(fake.authorizations) == {f"Bearer {TOKEN}"}
    assert fake.batches[0][0] == {
        "model": "gpt-4", "provider": "primary", "ok": True, "latency_ms": 250.0, "at": END.timestamp()
    }


async def test_entries_router_health_refuses_are_counted(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    fake.reject_first = True
    plugin = make_plugin(clients, fake.url, batch_size=100)
    for _ in range(3):
        plugin.record(success(), True, START, END)
    await eventually(lambda: plugin.client.stats().rejected >= 1)
    stats = plugin.client.stats()
    assert stats.sent + stats.rejected == 3


async def test_a_full_queue_drops_new_outcomes_and_counts_them(clients: list[RouterHealthClient]) -> None:
    # Nothing is sent for a minute, so the queue only fills.
    plugin = make_plugin(clients, f"http://127.0.0.1:{free_port()}", max_queue=3, flush_interval=60)
    for _ in range(5):
        plugin.record(success(), True, START, END)
    stats = plugin.client.stats()
    assert (stats.queued, stats.dropped) == (3, 2)


@pytest.mark.parametrize("mode", ["error", "busy", "hang", "down"])
async def test_undeliverable_outcomes_are_lost_and_counted_never_raised(
    fake: FakeRouterHealth, clients: list[RouterHealthClient], mode: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}" if mode == "down" else fake.url
    fake.observe_mode = mode
    plugin = make_plugin(clients, url, send_timeout=0.3)
    plugin.record(success(), True, START, END)
    await eventually(lambda: plugin.client.stats().lost >= 1)
    plugin.record(success(), True, START, END)  # still takes outcomes, as before
    assert plugin.client.stats().sent == 0


async def test_without_an_observe_token_nothing_is_queued(
    fake: FakeRouterHealth, clients: list[RouterHealthClient]
) -> None:
    plugin = make_plugin(clients, fake.url, observe_token=None)
    plugin.record(success(), True, START, END)
    assert plugin.client.stats() == type(plugin.client.stats())()


def test_a_broken_event_is_not_reported_and_not_raised() -> None:
    client = RouterHealthClient(settings("http://127.0.0.1:9", flush_interval=60))
    plugin = LiteLLMPlugin(client, model_list=MODEL_LIST, env={})

    class Exploding(dict[str, Any]):
        def get(self, *args: Any) -> Any:
            raise RuntimeError("surprise")

    plugin.record(Exploding(), True, START, END)
    plugin.record(None, False, None, None)
    assert client.stats().queued == 0
    client.close()


# -- settings --------------------------------------------------------------------------------


def test_settings_come_from_arguments_then_the_environment() -> None:
    env = {"ROUTER_HEALTH_URL": "http://10.1.1.1:8000", "ROUTER_HEALTH_OBSERVE_TOKEN": TOKEN,
           "ROUTER_HEALTH_POLL_INTERVAL": "5", "ROUTER_HEALTH_ROUTE_TIMEOUT": "0.5"}
    chosen = ClientSettings.from_env(env, poll_interval=1.0, route_timeout=None)
    assert (chosen.url, chosen.observe_token) == ("http://10.1.1.1:8000", TOKEN)
    assert (chosen.poll_interval, chosen.route_timeout) == (1.0, 0.5)


@pytest.mark.parametrize(
    ("env", "given", "message"),
    [
        ({}, {}, "router-health's URL is not set: pass url=... or export ROUTER_HEALTH_URL="),
        ({"ROUTER_HEALTH_URL": "http://h", "ROUTER_HEALTH_STALE_AFTER": "soon"}, {},
         "ROUTER_HEALTH_STALE_AFTER must be a number, got 'soon'"),
        ({}, {"url": "h:8000"}, "must start with http:// or https://"),
        ({}, {"url": "http://h", "route_timeout": 0}, "route_timeout must be a finite number"),
        ({}, {"url": "http://h", "max_queue": 0}, "max_queue must be a whole number >= 1"),
    ],
)
def test_bad_settings_say_which_and_how_to_fix(
    env: dict[str, str], given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        ClientSettings.from_env(env, **given)
    assert message in str(info.value)


def test_an_unknown_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown router-health setting"):
        ClientSettings.from_env({}, url="http://h", poll_intervall=1)


# -- the LiteLLM callback: LiteLLM's hooks, never raising into LiteLLM ----------------------------


async def test_the_callback_is_a_litellm_logger_whose_hooks_never_raise(
    clients: list[RouterHealthClient],
) -> None:
    require_litellm("the LiteLLM plugin's tests")
    from litellm.integrations.custom_logger import CustomLogger

    from service.integrations.litellm import RouterHealthCallback

    callback = RouterHealthCallback(
        model_list=MODEL_LIST, env={}, url=f"http://127.0.0.1:{free_port()}", observe_token=TOKEN,
        flush_interval=60,
    )
    clients.append(callback.router_health.client)
    assert isinstance(callback, CustomLogger)
    given = deployments()
    assert await callback.async_filter_deployments("gpt-4", given, None) is given
    assert await callback.async_filter_deployments("gpt-4", None, None) is None  # type: ignore[arg-type]
    await callback.async_log_success_event(success(), None, START, END)
    await callback.async_log_failure_event({"exception": object()}, None, "x", 3)
    callback.log_success_event(object(), None, None, None)
    callback.log_failure_event(success(), None, START, END)
    assert callback.router_health.client.stats().queued == 2


def test_the_proxy_instance_is_configured_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    require_litellm("the LiteLLM plugin's tests")
    import service.integrations.litellm as plugin_module

    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"model_list": MODEL_LIST}), encoding="utf-8")
    monkeypatch.setenv("ROUTER_HEALTH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ROUTER_HEALTH_LITELLM_CONFIG", str(config))
    plugin_module._proxy_callback.cache_clear()
    try:
        callback = plugin_module.proxy_callback
        assert callback is plugin_module.proxy_callback  # one instance
        names = callback.router_health.names()
        assert names is not None and names.name("gpt-4", {"model_info": {"id": "primary"}}) == "primary"
        callback.close()
    finally:
        plugin_module._proxy_callback.cache_clear()
