"""The package as a user gets it: built, checked, installed alone in a fresh venv.

``python -m build`` makes the sdist and, from it, the wheel (so the sdist is
complete); ``twine check --strict`` reads both as PyPI would. The wheel is
installed with its base dependencies only (from the package index, as
``pip install router-health`` would) into a fresh ``python -m venv``, and run
from a temporary directory, so nothing of this checkout is on ``sys.path``:
``--version``, ``check`` on the built-in demo fleet and against the
simulator started from the installed package, ``demo`` serving its static
files, and ``[cluster]`` refused with the extra named.

The base install stays small: no extra's library comes with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support import ROOT
from tests.support.cli import read_stdout_until

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "version"
]
#: What a checkout holds beside its sources: left out of the copy the build runs in.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "site", "__pycache__", ".*_cache",
    ".hypothesis", ".test-artifacts", "wheels",
)
#: Each extra's libraries: none may come with the base install.
EXTRA_ONLY = {
    "coredis", "apprise", "botocore", "google-auth", "cryptography", "litellm",
    "opentelemetry-sdk", "opentelemetry-api", "playwright", "pytest", "mypy",
    "schemathesis", "mkdocs", "openai", "anthropic", "rich", "matplotlib",
}
KEY = "rhtestkey-wheel-anthropic-41d9"
TIMEOUT = 600


def run(*args: str | Path, cwd: Path | None = None, **kwargs: Any) -> str:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd,
        **kwargs,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built from a copy of the checkout's sources."""
    if shutil.which("twine", path=str(Path(sys.executable).parent)) is None:
        if os.environ.get("CI") == "true":
            pytest.fail("build and twine are missing — CI must build the package")
        pytest.skip("build and twine are missing (pip install -e '.[dev]')")
    work = tmp_path_factory.mktemp("dist")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = work / "out"
    run(sys.executable, "-m", "build", "--outdir", out, source)
    built = {path.suffix: path for path in out.iterdir()}
    assert set(built) == {".whl", ".gz"}, sorted(built)
    return {"wheel": built[".whl"], "sdist": built[".gz"]}


@pytest.fixture(scope="module")
def venv(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its base dependencies, nothing else."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    run(sys.executable, "-m", "venv", home)
    run(home / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check",
        "--progress-bar", "off", dist["wheel"])
    return home


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no config: only what a fresh shell has."""
    env = {
        key: value for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "ROUTER_HEALTH_CONFIG", "VIRTUAL_ENV")
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def test_twine_accepts_the_sdist_and_the_wheel(dist: dict[str, Path]) -> None:
    output = run(Path(sys.executable).parent / "twine", "check", "--strict",
                 dist["wheel"], dist["sdist"])
    assert output.count("PASSED") == 2, output


def test_the_wheel_holds_the_packages_static_files_and_simulator(dist: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    static = {p.relative_to(ROOT).as_posix() for p in (ROOT / "service/api/static").iterdir()}
    assert static <= names
    assert {"service/py.typed", "adapters/py.typed", "service/testing/demo.py",
            "service/testing/simulator/__main__.py"} <= names
    tops = {name.split("/")[0] for name in names}
    assert tops == {"service", "adapters", f"router_health-{VERSION}.dist-info"}
    metadata = zipfile.ZipFile(dist["wheel"]).read(
        f"router_health-{VERSION}.dist-info/METADATA"
    ).decode()
    base = [line for line in metadata.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [line for line in base if re.search(r"\b(coredis|apprise|botocore)\b", line)]
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", metadata, re.M))
    assert {"cluster", "otel", "alerts", "bedrock", "vertex", "litellm", "dev"} <= extras
    entry_points = zipfile.ZipFile(dist["wheel"]).read(
        f"router_health-{VERSION}.dist-info/entry_points.txt"
    ).decode()
    assert "router-health = service.cli:main" in entry_points


def test_the_sdist_holds_the_sources_the_changelog_and_no_tests(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "service/cli.py",
            "service/api/static/dashboard.js", "adapters/py.typed"} <= names
    assert not [name for name in names if name.startswith("tests/")]


def test_the_base_install_brings_no_extra(venv: Path) -> None:
    listed = json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format", "json",
                            "--disable-pip-version-check"))
    installed = {entry["name"].lower() for entry in listed}
    assert "router-health" in installed
    assert not installed & EXTRA_ONLY


def test_version_and_imports_come_from_the_venv(venv: Path, tmp_path: Path) -> None:
    assert run(venv / "bin" / "router-health", "--version", cwd=tmp_path, env=clean_env()) == (
        f"router-health {VERSION}\n"
    )
    where = run(venv / "bin" / "python", "-c",
                "import service, adapters; print(service.__file__); print(adapters.__file__)",
                cwd=tmp_path, env=clean_env())
    for path in where.split():
        assert Path(path).is_relative_to(venv), where


def test_check_runs_the_built_in_demo_fleet(venv: Path, tmp_path: Path) -> None:
    done = subprocess.run([venv / "bin" / "router-health", "check"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=clean_env())
    assert done.returncode == 1, done.stderr  # degraded: one provider 503s, one hangs
    assert "status: degraded — 7/9 models healthy" in done.stdout


def test_cluster_without_its_extra_is_a_config_error_naming_it(
    venv: Path, tmp_path: Path
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(
        '[checks]\ninterval = 60\n[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\n'
        '[[models]]\nname = "m"\n[[models.providers]]\nname = "p"\ntype = "ollama"\n'
        'base_url = "http://127.0.0.1:9"\n',
        encoding="utf-8",
    )
    done = subprocess.run([venv / "bin" / "router-health", "check", "--config", config],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=clean_env())
    assert done.returncode == 3
    assert "pip install 'router-health[cluster]'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_check_against_the_installed_simulator(venv: Path, tmp_path: Path) -> None:
    spec = [
        {"name": "anthropic", "kind": "anthropic", "api_key": KEY, "models": ["claude-3-haiku"]},
        {"name": "ollama", "kind": "ollama", "models": ["llama3:latest"]},
        {"name": "down", "kind": "ollama", "models": ["mistral:latest"],
         "behavior": {"mode": "status", "status": 503}},
    ]
    await trio.Path(tmp_path / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    simulator = await trio.lowlevel.open_process(
        [venv / "bin" / "python", "-m", "service.testing.simulator", "--spec", "spec.json"],
        stdout=subprocess.PIPE, cwd=tmp_path, env=clean_env(),
    )
    try:
        with trio.fail_after(30):
            line = await read_stdout_until(simulator, lambda out: out.endswith(b"\n"))
        root = line.decode().split()[1]
        config = tmp_path / "fleet.toml"
        await trio.Path(config).write_text(
            "[checks]\nadapter_timeout = 5\n"
            + "".join(
                f'[[models]]\nname = "{model}"\n[[models.providers]]\nname = "{name}"\n'
                f'type = "{kind}"\nbase_url = "{root}/{name}"\nmodel = "{upstream}"\n{key}'
                for model, name, kind, upstream, key in (
                    ("claude-3-haiku", "anthropic", "anthropic", "claude-3-haiku",
                     'api_key_env = "ANTHROPIC_API_KEY"\n'),
                    ("llama3", "ollama", "ollama", "llama3:latest", ""),
                    ("mistral", "down", "ollama", "mistral:latest", ""),
                )
            ),
            encoding="utf-8",
        )
        with trio.fail_after(60):
            done = await trio.run_process(
                [venv / "bin" / "router-health", "check", "--config", config],
                capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path,
                env=clean_env(ANTHROPIC_API_KEY=KEY),
            )
        table = done.stdout.decode()
        assert done.returncode == 1, done.stderr.decode()  # degraded
        rows = {line.split()[0]: line.split()[2] for line in table.splitlines()[1:4]}
        assert rows == {"claude-3-haiku": "healthy", "llama3": "healthy", "mistral": "unhealthy"}
        assert "status: degraded — 2/3 models healthy" in table
    finally:
        simulator.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await simulator.wait()


async def test_demo_serves_the_dashboard_from_the_installed_package(
    venv: Path, tmp_path: Path
) -> None:
    demo = await trio.lowlevel.open_process(
        [venv / "bin" / "router-health", "demo", "--port", "0"],
        stdout=subprocess.PIPE, cwd=tmp_path, env=clean_env(),
    )
    try:
        with trio.fail_after(30):
            banner = await read_stdout_until(demo, lambda out: b"Ctrl-C stops it." in out)
        url = re.search(rb"health API on (http://\S+)", banner)
        assert url is not None, banner
        async with httpx.AsyncClient(base_url=url.group(1).decode(), timeout=30) as client:
            assert (await client.get("/livez")).json() == {"status": "ok"}
            page = await client.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            for name in ("dashboard.js", "dashboard.css", "favicon.svg"):
                assert (await client.get(f"/static/{name}")).status_code == 200, name
            assert (await client.get("/status")).status_code == 200
            models = await client.get("/v1/health/models")
            assert "gpt-4" in models.text
        demo.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await demo.wait() == 0
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
