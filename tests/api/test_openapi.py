"""The OpenAPI document (service/api/openapi.py) against the app it describes.

* The document is valid OpenAPI 3.1 (Schemathesis' bundled meta-schema, and
  every schema in it valid JSON Schema 2020-12).
* Every route the app registers is in it with its methods, and nothing else.
* Schemathesis fuzzes a real server (hypercorn, the simulator upstream)
  against the document the server itself serves at ``GET /openapi.json``:
  no 500, only documented status codes and content types, and every body
  matches its schema. Schemathesis' ASGI transport runs on asyncio and the
  app needs Trio, so the server runs in the Trio test and Schemathesis'
  blocking client in a worker thread (``trio.to_thread.run_sync``).
* The two operations left out of fuzzing (the endless event stream and the
  slow performance measurement) are each checked on one live answer.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import hypothesis.errors
import jsonschema_rs
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from service import parse_config
from service.api.app import create_app
from service.api.openapi import openapi_spec
from tests.support.browser import CHROMIUM, require_browser
from tests.support.served import GUARD, PROVIDERS, Service, running_service

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: 503 is no server error here: it is the documented answer of an unhealthy check (and
#: of not_ready). Every other 5xx, a 500 first, fails ``not_a_server_error``.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}}
)
#: Fast simulated providers; a small max_timeout so fuzzed timeouts stay short.
FAST_CHECKS = {"adapter_timeout": 1, "timeout": 2, "model_timeout": 2}
SERVER = {"max_timeout": 5}
#: Not fuzzed: the stream never ends, the measurement probes everything twice.
NOT_FUZZED = {"/v1/health/stream", "/v1/health/performance"}
MAX_EXAMPLES = 25
TOKEN = "rhtestkey-openapi-token-4b7e1d"
#: Configured model names (tests.support.served.MODELS), so fuzzing reaches 200/503 too.
MODEL_NAMES = ["gpt-4", "llama3:latest", "claude-3-haiku"]


# -- the document ---------------------------------------------------------------------------


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_spec()
    assert document["openapi"].startswith("3.1.")
    errors = [f"{e.instance_path}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert errors == []
    schemathesis.openapi.from_dict(document).validate()
    # Every schema is a valid JSON Schema 2020-12 schema, every $ref resolves.
    for where, node in _walk(document):
        if isinstance(node, dict) and "$ref" in node and isinstance(node["$ref"], str):
            _resolve(document, node["$ref"])  # KeyError: a dangling reference
        if where.endswith("/schema") or re.fullmatch(r"#/components/schemas/[^/]+", where):
            jsonschema_rs.meta.validate(node)
    # JSON all the way down (what /openapi.json serves), and stable.
    assert json.loads(json.dumps(document)) == document == openapi_spec()
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


def test_the_timeout_bound_is_the_servers() -> None:
    document = openapi_spec(max_timeout=7.5, version="9.9.9")
    assert document["info"]["version"] == "9.9.9"
    assert document["components"]["parameters"]["timeout"]["schema"]["maximum"] == 7.5
    body = document["paths"]["/v1/health/batch"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["properties"]["timeout"]["maximum"] == 7.5
    assert openapi_spec()["components"]["parameters"]["timeout"]["schema"]["maximum"] == 120


def _app_routes(*, builtin_static: bool = False) -> set[tuple[str, str]]:
    config = parse_config(
        {"models": [{"name": "m", "providers": [{"name": "p", "type": "ollama",
                                                 "base_url": "http://127.0.0.1:9"}]}]},
        source="<test>",
        env={},
    )
    app = create_app(config)
    routes: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" and not builtin_static:
            continue  # Quart's own static route: see the test below
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            routes.add((path, method.lower()))
    return routes


def test_every_route_of_the_app_is_documented_with_its_methods_and_nothing_else() -> None:
    documented = {
        (path, method) for path, item in openapi_spec()["paths"].items() for method in item
    }
    assert _app_routes() == documented


def test_the_app_registers_no_route_of_its_own_framework() -> None:
    assert not {route for route in _app_routes(builtin_static=True) if route not in _app_routes()}


# -- fuzzing the live server ---------------------------------------------------------------


def _strategies(operation: Any, mode: schemathesis.GenerationMode) -> Any:
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is not schemathesis.GenerationMode.POSITIVE:
        return strategy
    # Random names are almost all unknown (404): also try the configured ones.
    if operation.path == "/v1/health/models/{name}":
        named = [operation.as_strategy(path_parameters={"name": n}) for n in MODEL_NAMES]
        strategy = st.one_of(strategy, *named)
    elif operation.path == "/v1/health/history":
        named = [operation.as_strategy(query={"model": n}) for n in MODEL_NAMES]
        named += [operation.as_strategy(query={"provider": p}) for p in PROVIDERS]
        named += [operation.as_strategy(query={"model": n, "limit": 3}) for n in MODEL_NAMES]
        strategy = st.one_of(strategy, operation.as_strategy(query={}), *named)
    elif operation.path in ("/v1/health/uptime", "/v1/health/incidents"):
        named = [operation.as_strategy(query={"model": n}) for n in MODEL_NAMES]
        strategy = st.one_of(strategy, operation.as_strategy(query={}), *named)
    return strategy


def fuzz(
    base_url: str,
    document: dict[str, Any],
    *,
    include: Callable[[str], bool],
    max_examples: int = MAX_EXAMPLES,
    headers: dict[str, str] | None = None,
) -> tuple[list[str], int]:
    """Run Schemathesis over every included operation; (failures, requests sent).

    Runs in a worker thread: it blocks on HTTP calls to the server the Trio
    test is running.
    """
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document)), config=CONFIG)
    failures: list[str] = []
    sent = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # the document has no invalid operation
            operation = result.ok()
            if not include(operation.path):
                continue
            has_input = bool(operation.path_parameters or operation.query or operation.body)
            modes = [schemathesis.GenerationMode.POSITIVE]
            if has_input:
                modes.append(schemathesis.GenerationMode.NEGATIVE)
            for mode in modes:

                @hypothesis.settings(
                    max_examples=max_examples,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                )
                @given(case=_strategies(operation, mode))
                def run(case: Any) -> None:
                    nonlocal sent
                    sent += 1
                    case.call_and_validate(
                        base_url=base_url, session=session, headers=headers, checks=CHECKS,
                        timeout=GUARD * 2,
                    )

                try:
                    run()
                except hypothesis.errors.Unsatisfiable:
                    # No invalid input exists (a path parameter that only needs to be
                    # non-empty cannot be negated in a URL): nothing to test.
                    assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
                # One operation's failures must not hide another's (FailureGroup is a
                # BaseExceptionGroup).
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{operation.method.upper()} {operation.path} "
                                    f"[{mode.value}]:\n{exc}")
    return failures, sent


async def served_document(service: Service) -> dict[str, Any]:
    response = await service.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    # The served document is this module's, with the server's own timeout bound.
    assert document == openapi_spec(max_timeout=SERVER["max_timeout"])
    return document


def _impair(service: Service) -> None:
    """Answers of every kind: a degraded model (a 503), and a 429 with Retry-After."""
    service.sim.set_behavior("openai-backup", mode="status", status=503)
    service.sim.set_behavior("anthropic", mode="rate_limited", retry_after=30)


async def test_schemathesis_finds_the_live_server_true_to_its_document() -> None:
    async with running_service(checks=FAST_CHECKS, server=SERVER, guard=80) as service:
        document = await served_document(service)
        _impair(service)
        failures, sent = await trio.to_thread.run_sync(
            functools.partial(fuzz, service.url, document, include=lambda p: p not in NOT_FUZZED)
        )
    assert not failures, "\n\n".join(failures)
    assert sent > 200


async def test_schemathesis_with_background_checks_and_history() -> None:
    # Answers from the live state: source/background, cached/age_s/stale details, history;
    # storage on (by default with background checks): uptime, incidents, history pages.
    checks = {**FAST_CHECKS, "interval": 0.2, "max_age": 0.3, "stale_while_revalidate": 5}
    async with running_service(checks=checks, server=SERVER, guard=60) as service:
        document = await served_document(service)
        _impair(service)
        with trio.fail_after(GUARD):
            while True:  # until every adapter has a background result
                history = (await service.client.get("/v1/health/history")).json()
                if all(a["history"] for a in history["adapters"]):
                    break
                await trio.sleep(0.05)
        served = (await service.client.get("/v1/health/")).json()
        assert served["source"] == "background"
        wanted = {"/v1/health/", "/v1/health/models", "/v1/health/models/{name}",
                  "/v1/health/batch", "/v1/health/history", "/v1/health/uptime",
                  "/v1/health/incidents"}
        failures, _ = await trio.to_thread.run_sync(
            functools.partial(fuzz, service.url, document, include=wanted.__contains__,
                              max_examples=10)
        )
    assert not failures, "\n\n".join(failures)


async def test_schemathesis_with_auth_on_and_without_the_token() -> None:
    # 401 (with WWW-Authenticate) where the token is needed, summaries elsewhere.
    server = {**SERVER, "auth_token": TOKEN}
    async with running_service(checks=FAST_CHECKS, server=server, guard=60) as service:
        document = await served_document(service)
        for path in ("/v1/health/performance", "/v1/health/history", "/v1/health/uptime",
                     "/v1/health/incidents", "/v1/health/stream"):
            response = await service.client.get(path)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer ")
            _operation(document, path).validate_response(response)
        wrong = await service.client.get("/v1/health/", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        _operation(document, "/v1/health/").validate_response(wrong)
        anonymous = {"/v1/health/", "/v1/health/models", "/v1/health/models/{name}",
                     "/v1/health/batch", "/v1/health/history", "/livez", "/readyz"}
        failures, _ = await trio.to_thread.run_sync(
            functools.partial(fuzz, service.url, document, include=anonymous.__contains__,
                              max_examples=8)
        )
    assert not failures, "\n\n".join(failures)


# -- the operations not fuzzed, one live answer each --------------------------------------------


def _operation(document: dict[str, Any], path: str, method: str = "GET") -> Any:
    return schemathesis.openapi.from_dict(json.loads(json.dumps(document)))[path][method]


def _validator(document: dict[str, Any], pointer: str) -> jsonschema_rs.Validator:
    """A validator for the schema at ``pointer``, its $refs resolved inside ``document``."""
    return jsonschema_rs.Draft202012Validator(
        {"$ref": pointer, "components": document["components"]}
    )


async def test_a_live_performance_answer_matches_the_document() -> None:
    async with running_service(checks=FAST_CHECKS, server=SERVER) as service:
        document = await served_document(service)
        response = await service.client.get("/v1/health/performance?timeout=2")
        bad = await service.client.get("/v1/health/performance?timeout=9")
    operation = _operation(document, "/v1/health/performance")
    assert response.status_code == 200
    assert response.json()["limits"] == {"adaptive": False, "current": {}}
    operation.validate_response(response)
    assert bad.status_code == 400
    operation.validate_response(bad)


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_a_live_event_stream_matches_the_document() -> None:
    checks = {**FAST_CHECKS, "interval": 0.2}  # background checks: transitions too
    async with running_service(checks=checks, server=SERVER) as service:
        document = await served_document(service)
        seen: list[tuple[str, dict[str, Any]]] = []
        with trio.fail_after(GUARD):
            async with service.client.stream("GET", "/v1/health/stream") as response:
                assert response.status_code == 200
                media_type = response.headers["content-type"].split(";")[0].strip()
                documented = document["paths"]["/v1/health/stream"]["get"]["responses"]["200"]
                assert media_type in documented["content"]
                assert response.headers["cache-control"] == "no-store"
                text = ""
                # Transitions (background checks), results with errors and Retry-After, runs.
                service.sim.set_behavior("ollama", mode="status", status=503)
                service.sim.set_behavior("anthropic", mode="rate_limited")
                await service.client.get("/v1/health/?fresh=true")
                async for chunk in response.aiter_text():
                    text += chunk
                    seen = _events(text)
                    if {"hello", "result", "transition", "run"} <= {kind for kind, _ in seen}:
                        break
    events = document["paths"]["/v1/health/stream"]["get"]["responses"]["200"]["content"][
        "text/event-stream"]["x-events"]
    for kind, data in seen:
        errors = [e.message for e in _validator(document, events[kind]["$ref"]).iter_errors(data)]
        assert errors == [], (kind, data)


async def test_head_on_the_event_stream_ends() -> None:
    async with running_service(checks=FAST_CHECKS, server=SERVER, guard=20) as service:
        head = await service.client.head("/v1/health/stream")
        assert head.status_code == 200
        # The same pooled connection: were it still busy with the HEAD's
        # endless body, this would never answer (the guard fails the test).
        with trio.fail_after(GUARD):
            livez = await service.client.get("/livez")
        assert livez.status_code == 200


# -- the /docs page ------------------------------------------------------------------------


#: A string that would run script if the page ever parsed spec text as HTML.
HOSTILE = '<img src="x" onerror="window.pwned = 1">'


def _render_docs(url: str, hostile_document: dict[str, Any]) -> dict[str, Any]:
    from playwright.sync_api import Route, sync_playwright

    errors: list[str] = []
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)  # a bound on a hang: Chromium is slow on a busy machine
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requested.append(request.url))
            page.goto(url + "/docs")
            page.wait_for_selector("section.op")
            found = {
                "operations": page.eval_on_selector_all(
                    "section.op[id^='op-']", "els => els.map(e => e.id)"),
                "headings": page.eval_on_selector_all(
                    "section.op[id^='op-'] h3", "els => els.map(e => e.textContent)"),
                "schemas": page.locator("section.op[id^='schema-']").count(),
                "parameters": page.locator("section.op[id^='op-'] tbody tr").count(),
                "nav": page.locator("nav a").count(),
            }
            # Spec strings are text, never markup.
            hostile = browser.new_page()
            hostile.on("pageerror", lambda error: errors.append(str(error)))

            def serve(route: Route) -> None:
                route.fulfill(status=200, content_type="application/json",
                              body=json.dumps(hostile_document))

            hostile.route("**/openapi.json", serve)
            hostile.goto(url + "/docs")
            hostile.wait_for_selector("section.op")
            found["pwned"] = hostile.evaluate("window.pwned === 1")
            found["hostile_text"] = hostile.locator("main").inner_text()
            found["images"] = hostile.locator("main img").count()
        finally:
            browser.close()
    found["errors"] = errors
    found["requested"] = requested
    return found


async def test_the_docs_page_is_served_as_html_without_a_cdn() -> None:
    # Apart from the rendering below, so a machine without a browser still checks it.
    async with running_service(checks=FAST_CHECKS, server=SERVER) as service:
        page = await service.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # no CDN


async def test_the_docs_page_renders_every_operation_of_the_served_document() -> None:
    require_browser("the docs page test (rendering /docs in Chromium)")
    async with running_service(checks=FAST_CHECKS, server=SERVER, guard=120) as service:
        document = await served_document(service)
        page = await service.client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # no CDN
        hostile = json.loads(json.dumps(document))
        hostile["info"]["description"] = HOSTILE
        hostile["paths"]["/livez"]["get"]["summary"] = HOSTILE
        found = await trio.to_thread.run_sync(_render_docs, service.url, hostile)
    assert found["errors"] == []
    assert all(url.startswith(service.url + "/") for url in found["requested"])
    operations = [
        (path, method, op) for path, item in document["paths"].items()
        for method, op in item.items() if method != "head" or "get" not in item
    ]
    assert sorted(found["operations"]) == sorted(f"op-{op['operationId']}"
                                                 for _, _, op in operations)
    for path, method, _ in operations:
        assert any(path in h and method in h for h in found["headings"]), (method, path)
    assert found["schemas"] == len(document["components"]["schemas"])
    assert found["parameters"] >= 30
    assert found["pwned"] is False and found["images"] == 0
    assert HOSTILE in found["hostile_text"]
