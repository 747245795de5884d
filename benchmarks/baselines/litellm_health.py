"""LiteLLM's own proxy health check, on the job's fleet: the installed package's code, not a copy.

What runs, per measured run, is what the LiteLLM proxy's ``GET /health`` does
for an admin key when background health checks are off
(``litellm.proxy.health_endpoints._health_endpoints.health_endpoint`` ->
``_perform_health_check_and_save``):

* once, before any run (proxy start-up): ``litellm.Router(model_list=...)``,
  one deployment per target of ``workload.targets``: ``model_name`` = the
  target's model, ``litellm_params`` = ``{"model": "openai/sim-model",
  "api_base": <target base_url>, "api_key": workload.API_KEY, "timeout": T}``,
  ``model_info`` = ``{"id": <provider name>, "health_check_timeout": T}``, with
  ``T`` = the target's own timeout or the job's ``adapter_timeout``, as the
  seed baseline bounds each adapter. Both are LiteLLM's documented
  per-deployment settings; ``health_check_timeout`` (default
  ``HEALTH_CHECK_TIMEOUT_SECONDS`` = 60 s) is the probe's whole-call bound,
  ``timeout`` only the HTTP client's per-operation one, under which a trickled
  body (the ``slow_body`` sentinel) comes back healthy. Every deployment's
  bound starts when the run does, and LiteLLM is CPU-bound from about 1,000
  deployments (8-9 ms of CPU per probe): on two busy cores one run then takes
  9-15 s, so the seed's 8 s turns much of the fleet into timeouts, while
  LiteLLM's own 60 s does not. The deployment list the proxy keeps is
  ``router.registry().deployments()`` (building the Router is start-up, not
  measured: about 4 s at 1,000 deployments, a minute at 10,000);
* each run: ``copy.deepcopy`` of that list (the endpoint copies it per call),
  then ``litellm.proxy.health_check.perform_health_check(model_list=...,
  model=None, cli_model=None, details=True, model_id=None,
  max_concurrency=None, router=router, team_id=None,
  health_check_skip_disabled_background_models=False)``: the proxy's defaults
  (``health_check_details`` True; ``health_check_concurrency`` unset, so
  ``_perform_health_check`` starts one asyncio task per deployment and gathers
  them all: LiteLLM has a bounded mode, off by default). Each task is
  ``_run_model_health_check``: ``litellm.ahealth_check`` in chat mode (a
  ``POST {api_base}/chat/completions`` with a short random message and
  ``max_tokens`` 16) under ``asyncio.wait_for(health_check_timeout)``, through
  LiteLLM's OpenAI client with its defaults, its two retries
  (``DEFAULT_MAX_RETRIES``) with the OpenAI SDK's back-off on 429, 5xx and
  connection errors included: the 500, 429 and reset sentinels take two to
  three seconds, not half the latency, and set the wall of a small fleet.
  ``job["concurrent"]`` false sets ``max_concurrency=1`` (LiteLLM's own
  bound) instead; a job's ``health_check_concurrency`` sets it to that number.

LiteLLM's result is mapped back to provider names by ``model_id`` (the
deployment id is the provider name) and judged with
``workload.judge(strict=False)``: healthy exactly where expected, since
LiteLLM says healthy or unhealthy and nothing finer. The check imports
``litellm[proxy]`` modules while it runs: ``fastapi`` and ``orjson`` must be
installed beside ``litellm`` (without them this exits 2 saying so, rather
than report every deployment unhealthy with a ModuleNotFoundError). The price
map is LiteLLM's bundled copy (``LITELLM_LOCAL_MODEL_COST_MAP``), and its
logging is off (``logging.disable``, ``litellm.suppress_debug_info``) so no
log line is measured.

``python -m benchmarks.baselines.litellm_health JOB.json`` takes the same
job as ``benchmarks.worker`` (``root_url``, ``sim_pid`` or ``upstream_pids``
and ``sentinel_pid``, ``n``, ``latency``, ``sentinels``, ``concurrent``,
``warmup``, ``repeats``, ``adapter_timeout``) and ``cap_s`` like the seed
baseline: a run still going after ``cap_s`` is abandoned (cancelled) and the
result says ``finished: false``. It prints the same result keys on its last
stdout line (and ``max_concurrency``, ``sentinel_cpu_s``).
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import logging
import os
import resource
import statistics
import sys
import time
from typing import Any

from .. import measure, workload

# LiteLLM is imported only inside functions, after these: its bundled price map
# (no network here), and no log output.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("LITELLM_LOG", "CRITICAL")

#: What ``litellm_params.model`` names: the OpenAI provider, the simulator's model.
LITELLM_MODEL = f"openai/{workload.MODEL}"


#: Modules of ``litellm[proxy]`` the health check imports while it runs (the
#: request-tracking step): without them every deployment would come back
#: unhealthy with a ModuleNotFoundError, so their absence is an error instead.
PROXY_MODULES = ("fastapi", "orjson")


def missing_proxy_modules() -> list[str]:
    return [name for name in PROXY_MODULES if importlib.util.find_spec(name) is None]


def _silence() -> None:
    """No LiteLLM log line or feedback banner is written, so none is measured."""
    import litellm

    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    logging.disable(logging.CRITICAL)


def model_list(tabs: list[workload.Target], adapter_timeout: float) -> list[dict[str, Any]]:
    """A LiteLLM proxy ``model_list``: one deployment per target, its id the provider name."""
    out = []
    for t in tabs:
        timeout = t.timeout or adapter_timeout
        out.append(
            {
                "model_name": t.model,
                "litellm_params": {
                    "model": LITELLM_MODEL,
                    "api_base": t.base_url,
                    "api_key": workload.API_KEY,
                    "timeout": timeout,
                },
                "model_info": {"id": t.provider, "health_check_timeout": timeout},
            }
        )
    return out


def verdicts(
    healthy: list[dict[str, Any]], unhealthy: list[dict[str, Any]]
) -> dict[str, tuple[str, str, str]]:
    """provider -> (status, failure, error) from LiteLLM's endpoint lists, by ``model_id``."""
    out: dict[str, tuple[str, str, str]] = {}
    for endpoint in unhealthy:
        out[str(endpoint.get("model_id"))] = ("unhealthy", "", str(endpoint.get("error", "")))
    for endpoint in healthy:
        out[str(endpoint.get("model_id"))] = ("healthy", "", "")
    return out


def _why(line: str, found: dict[str, tuple[str, str, str]]) -> str:
    """A judge's line with LiteLLM's error for that provider, if it gave one."""
    error = found.get(line.split(":", 1)[0], ("", "", ""))[2]
    return f"{line} ({error[:160]})" if error else line


def _cpu(pids: list[int]) -> list[float]:
    return [measure.proc_cpu_seconds(pid) for pid in pids]


async def _measure(job: dict[str, Any]) -> dict[str, Any]:
    from litellm import Router
    from litellm.proxy.health_check import perform_health_check

    _silence()
    tabs = workload.targets(job["root_url"], job["n"], job["latency"], sentinels=job["sentinels"])
    router = Router(model_list=model_list(tabs, job["adapter_timeout"]))
    deployments = router.registry().deployments()
    concurrency = job.get("health_check_concurrency") or (None if job["concurrent"] else 1)

    async def run_once() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        healthy, unhealthy, _ = await perform_health_check(
            model_list=copy.deepcopy(deployments),
            model=None,
            cli_model=None,
            details=True,
            model_id=None,
            max_concurrency=concurrency,
            router=router,
            team_id=None,
            health_check_skip_disabled_background_models=False,
        )
        return list(healthy), list(unhealthy)

    walls: list[float] = []
    done: list[float] = []  # the walls of runs that finished
    correct_runs: list[int] = []
    wrong: list[str] = []
    finished = True
    cap = job.get("cap_s")
    try:
        for _ in range(job["warmup"]):
            await asyncio.wait_for(run_once(), cap)
    except TimeoutError:
        finished = False
    upstream = list(job.get("upstream_pids") or ([job["sim_pid"]] if job.get("sim_pid") else []))
    sentinel = [job["sentinel_pid"]] if job.get("sentinel_pid") else []
    up0, sentinel0 = _cpu(upstream), _cpu(sentinel)
    with measure.FdSampler() as sampler:
        cpu0 = measure.process_cpu()
        for _ in range(job["repeats"] if finished else 0):
            start = time.perf_counter()
            try:
                healthy, unhealthy = await asyncio.wait_for(run_once(), cap)
            except TimeoutError:
                finished = False
                walls.append(time.perf_counter() - start)
                break
            walls.append(time.perf_counter() - start)
            done.append(walls[-1])
            found = verdicts(healthy, unhealthy)
            correct, wrong_now = workload.judge(tabs, found, strict=False)
            correct_runs.append(correct)
            wrong = wrong or [_why(line, found) for line in wrong_now[:5]]
        cpu = measure.process_cpu() - cpu0
    upstream_cpu = sum(_cpu(upstream)) - sum(up0)
    sentinel_cpu = sum(_cpu(sentinel)) - sum(sentinel0)
    cpu -= sampler.cpu
    runs = max(len(walls), 1)
    probes = len(tabs) * runs
    # The fleet's requests: every probe when one upstream answers all, else the healthy ones.
    requests = (job["n"] if sentinel else len(tabs)) * runs
    return {
        "impl": "litellm",
        "transport": "litellm proxy health check (openai SDK)",
        "n": job["n"],
        "probes_per_run": len(tabs),
        "walls": walls,
        "wall_s": statistics.median(walls) if walls else None,
        "checker_s": statistics.median(done) if done else None,
        "cpu_ms_per_probe": cpu * 1000 / probes if walls else None,
        "sim_cpu_ms_per_probe": upstream_cpu * 1000 / requests if upstream and walls else None,
        "sentinel_cpu_s": sentinel_cpu / runs if sentinel and walls else None,  # per run
        "peak_rss_mb": measure.peak_rss_mb(),
        "peak_fds": sampler.peak,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "connection_budget": None,
        "max_concurrency": concurrency,
        "correct": min(correct_runs) if correct_runs else 0,
        "expected": len(tabs),
        "all_correct": bool(correct_runs) and finished and min(correct_runs) == len(tabs),
        "wrong": wrong[:5],
        "fallback_runs": 0,
        "finished": finished,
        "cap_s": cap,
    }


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    missing = missing_proxy_modules()
    if missing:
        print(
            f"LiteLLM's proxy health check needs {', '.join(missing)} (pip install 'litellm[proxy]')",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.CRITICAL)
    result = asyncio.run(_measure(job))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
