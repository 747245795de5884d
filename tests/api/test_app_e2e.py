"""End to end: a real hypercorn server on loopback, the simulator as upstream, httpx as client.

Nothing sleeps to wait for something to happen: the tests wait on the
simulator's counters (``wait_until``/``wait_idle``) and on events, each under
a ``fail_after`` guard so a regression fails instead of hanging.
"""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest
import trio

from service import parse_config
from service.api.app import create_app, get_manager, serve
from service.testing.simulator import Simulator
from tests.support.app import V1_TOP_FIELDS
from tests.support.served import (
    GUARD,
    MODELS,
    PROVIDERS,
    Service,
    config_for,
    running_service,
    simulated_fleet,
)


async def get(service: Service, path: str) -> tuple[int, dict[str, Any]]:
    response = await service.client.get(path)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    return response.status_code, body


async def test_serve_reports_its_url_and_the_healthy_fleet_answers_with_the_v1_shape() -> None:
    async with running_service() as service:
        status, body = await get(service, "/v1/health/")
    assert status == 200
    assert list(body)[:8] == list(V1_TOP_FIELDS)
    assert set(body) == set(list(body)[:8]) | {"fallback", "details"}
    assert body["status"] == "healthy"
    assert (body["healthy_models"], body["total_models"]) == (3, 3)
    assert body["models"]["gpt-4"] == {
        "status": "healthy",
        "providers": {"openai": "healthy", "openai-backup": "healthy"},
        "healthy_providers": 2,
        "total_providers": 2,
    }
    assert body["details"]["gpt-4"]["openai"]["http_status"] == 200
    assert body["concurrent"] is True
    assert body["timeout"] == 10.0


@pytest.mark.parametrize("use_concurrent", ["true", "false"])
async def test_one_provider_answering_500_degrades_the_fleet(use_concurrent: str) -> None:
    async with running_service() as service:
        service.sim.set_behavior("openai", mode="status", status=500)
        status, body = await get(service, f"/v1/health/?use_concurrent={use_concurrent}")
    assert status == 200
    assert body["status"] == "degraded"
    assert body["concurrent"] is (use_concurrent == "true")
    assert body["models"]["gpt-4"]["status"] == "degraded"
    assert body["models"]["gpt-4"]["providers"] == {
        "openai": "unhealthy",
        "openai-backup": "healthy",
    }
    assert body["models"]["claude-3-haiku"]["status"] == "healthy"
    assert body["details"]["gpt-4"]["openai"]["http_status"] == 500


@pytest.mark.parametrize("use_concurrent", ["true", "false"])
async def test_every_provider_failing_is_503(use_concurrent: str) -> None:
    async with running_service() as service:
        for name in PROVIDERS:
            service.sim.set_behavior(name, mode="status", status=500)
        status, body = await get(service, f"/v1/health/?use_concurrent={use_concurrent}")
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["healthy_models"] == 0


async def test_models_and_one_model_routes_over_the_wire() -> None:
    async with running_service(checks={"model_timeout": 4}) as service:
        service.sim.set_behavior("anthropic", mode="unauthorized")
        models_status, models = await get(service, "/v1/health/models")
        one_status, one = await get(service, "/v1/health/models/llama3%3Alatest")
        raw_status, raw = await get(service, "/v1/health/models/llama3:latest")
        bad_status, bad = await get(service, "/v1/health/models/claude-3-haiku")
        unknown_status, unknown = await get(service, "/v1/health/models/gpt-5")
    assert models_status == 200
    assert [m["model"] for m in models["models"]] == list(MODELS)
    assert (one_status, one["model"], one["status"], one["timeout"]) == (
        200,
        "llama3:latest",
        "healthy",
        4.0,
    )
    assert (raw_status, raw["model"]) == (200, "llama3:latest")
    assert (bad_status, bad["status"]) == (503, "unhealthy")
    assert bad["details"]["anthropic"]["failure"] == "auth"
    assert unknown_status == 404
    assert unknown["error"] == "unknown_model"
    assert unknown["available"] == list(MODELS)


async def test_performance_route_runs_both_strategies_once_each() -> None:
    async with running_service() as service:
        status, body = await get(service, "/v1/health/performance?timeout=5")
        requests = {name: service.sim.stats(name).requests for name in PROVIDERS}
    assert status == 200
    metrics = body["performance_metrics"]
    assert (metrics["total_models"], metrics["total_adapters"]) == (3, 4)
    assert metrics["concurrent_time"] > 0
    assert metrics["sequential_time"] > 0
    assert body["concurrent_result_count"] == body["sequential_result_count"] == 4
    assert body["agreement"] == {"agreed": True, "mismatches": []}
    assert body["concurrent_status"] == body["sequential_status"] == "healthy"
    assert requests == dict.fromkeys(PROVIDERS, 2)


async def test_liveness_readiness_and_json_errors_over_the_wire() -> None:
    async with running_service() as service:
        assert await get(service, "/livez") == (200, {"status": "ok"})
        assert await get(service, "/readyz") == (
            200,
            {"status": "ready", "models": 3, "adapters": 4},
        )
        status, body = await get(service, "/v1/nothing")
        assert (status, body["error"]) == (404, "not_found")
        status, body = await get(service, "/v1/health/?timeout=1e309")
        assert (status, body["parameter"]) == (400, "timeout")
        response = await service.client.post("/v1/health/")
        assert response.status_code == 405
        assert response.json()["error"] == "method_not_allowed"
        assert service.sim.total_stats().requests == 0


@pytest.mark.parametrize("gives_up", ["after_its_own_read_timeout", "when_cancelled"])
async def test_a_client_giving_up_cancels_its_probes_at_the_upstream(gives_up: str) -> None:
    # No finished runs kept for anonymous callers: nobody else wants the run.
    async with running_service(
        checks={"adapter_timeout": 60, "model_timeout": 60},
        server={"anonymous_min_interval": 0},
    ) as service:
        sim = service.sim
        sim.set_behavior("openai", mode="hang")
        if gives_up == "after_its_own_read_timeout":
            # 1 s is ages for a loopback probe to reach the simulator.
            with pytest.raises(httpx.ReadTimeout):
                await service.client.get(
                    "/v1/health/?timeout=60", timeout=httpx.Timeout(GUARD, read=1.0)
                )
        else:
            with trio.fail_after(GUARD):
                async with trio.open_nursery() as nursery:

                    async def impatient_client() -> None:
                        await service.client.get("/v1/health/?timeout=60")
                        raise AssertionError("the hanging provider cannot have answered")

                    nursery.start_soon(impatient_client)
                    await sim.wait_until(lambda: sim.stats("openai").in_flight >= 1)
                    nursery.cancel_scope.cancel()  # closes the client's connection
        # Only the service cancelling its probe can end the hanging upstream request.
        with trio.fail_after(GUARD):
            await sim.wait_idle()
        assert sim.stats("openai").requests >= 1
        assert sim.stats("openai").disconnected >= 1
        # The service itself is unharmed.
        sim.set_behavior("openai", mode="ok")
        status, body = await get(service, "/v1/health/")
        assert (status, body["status"]) == (200, "healthy")


async def test_shutdown_with_a_request_in_flight_cancels_it_after_the_grace_period() -> None:
    outcome: list[str] = []
    async with running_service(
        checks={"adapter_timeout": 60, "model_timeout": 60},
        server={"shutdown_grace": 0.2},
    ) as service:
        sim = service.sim
        sim.set_behavior("openai", mode="hang")

        async def slow_client() -> None:
            try:
                response = await service.client.get("/v1/health/?timeout=60")
            except httpx.TransportError as exc:
                outcome.append(type(exc).__name__)
            else:
                outcome.append(str(response.status_code))

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_client)
                await sim.wait_until(lambda: sim.stats("openai").in_flight >= 1)
                service.stop.set()
                await service.stopped.wait()
            await sim.wait_idle()
        assert not service.manager.is_open
        assert sim.stats("openai").disconnected >= 1
    assert len(outcome) == 1  # an answer or a connection error, but no hang


async def test_shutdown_lets_a_request_in_flight_finish_within_the_grace_period() -> None:
    answers: list[int] = []
    async with running_service(server={"shutdown_grace": 10}) as service:
        sim = service.sim
        sim.set_behavior("openai", latency=0.3)
        release = trio.Event()

        async def client() -> None:
            response = await service.client.get("/v1/health/")
            answers.append(response.status_code)
            release.set()

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client)
                await sim.wait_until(lambda: sim.stats("openai").in_flight >= 1)
                service.stop.set()
                await release.wait()
                await service.stopped.wait()
        assert not service.manager.is_open
        assert sim.stats("openai").completed >= 1
    assert answers == [200]


async def test_shutdown_does_not_wait_out_the_grace_period_for_idle_connections() -> None:
    async with running_service(server={"shutdown_grace": 30}) as service:
        status, _ = await get(service, "/v1/health/")
        assert status == 200
        # The client keeps its connection open (keep-alive) and idle.
        with trio.fail_after(GUARD):
            service.stop.set()
            await service.stopped.wait()
        assert not service.manager.is_open


async def test_serve_closes_the_clients_when_cancelled_from_outside() -> None:
    with trio.fail_after(GUARD * 2):
        async with trio.open_nursery() as upstream:
            sim = Simulator(simulated_fleet())
            await upstream.start(sim.serve)
            config = parse_config(config_for(sim, {}, {}), env={})
            app = create_app(config)
            manager = get_manager(app)
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(serve, app, host="127.0.0.1", port=0))
                assert manager.is_open
                nursery.cancel_scope.cancel()
            assert not manager.is_open
            upstream.cancel_scope.cancel()


async def test_a_part_failing_at_startup_fails_serve_with_its_own_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.live.background import BackgroundChecker

    async def broken_run(self: BackgroundChecker, **_: Any) -> None:
        raise RuntimeError("background checker broke at start")

    monkeypatch.setattr(BackgroundChecker, "run", broken_run)
    config = parse_config(
        {
            "checks": {"interval": 60},
            "models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}],
        },
        env={},
    )
    app = create_app(config)
    with trio.fail_after(GUARD), pytest.raises(BaseException) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve, app, host="127.0.0.1", port=0))
    error = info.value
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]  # the test's own nursery wraps what serve() raised
    # What hypercorn says about the failed startup names the error itself.
    assert "background checker broke at start" in str(error)
    assert "Exceptions from Trio nursery" not in str(error)
    assert not get_manager(app).is_open  # what had opened is closed again
