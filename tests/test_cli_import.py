"""LiteLLM configs on the command line: ``check``/``serve --config config.yaml`` and ``import litellm``.

Run as real processes against the simulator; the LiteLLM file points each
deployment's ``api_base`` at it, keys come from the environment.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest
import trio

from service.testing.simulator import Behavior, SimProvider, Simulator
from tests.support.cli import ROUTER_HEALTH, cli_env, read_stderr, served_url

OPENAI_KEY = "rhtestkey-sim-openai-0123456789"
AZURE_KEY = "rhtestkey-sim-azure-0123456789"
ANTHROPIC_KEY = "rhtestkey-sim-anthropic-0123456789"
LITERAL_KEY = "rhtestkey-literal-groq-0123456789"
ENV = {"RH_OPENAI_KEY": OPENAI_KEY, "RH_AZURE_KEY": AZURE_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
LITELLM_CONFIGS = Path(__file__).parent / "config" / "litellm_configs"


@pytest.fixture
def sim_providers() -> list[SimProvider]:
    fast = Behavior(latency=0.0)
    return [
        SimProvider("openai", "openai", OPENAI_KEY, ["gpt-4o", "gpt-4o-mini"], fast),
        SimProvider("azure", "azure", AZURE_KEY, ["gpt-4o-eu"], fast),
        SimProvider("anthropic", "anthropic", ANTHROPIC_KEY, ["claude-3-5-haiku-latest"], fast),
        SimProvider("groq", "groq", LITERAL_KEY, ["llama-3.1-8b-instant"], fast),
        SimProvider("ollama", "ollama", None, ["llama3:latest"], fast),
    ]


def litellm_config(sim: Simulator, path: Path, extra: str = "") -> Path:
    """A LiteLLM config.yaml for the simulated fleet: groups, prefixes, a wildcard, a literal key.

    Two ``api_base`` values end with the endpoint LiteLLM calls (it accepts that):
    router-health probes the server's root all the same.
    """
    path.write_text(
        f"""\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: {sim.base_url("azure")}
      api_key: os.environ/RH_AZURE_KEY
      api_version: "2024-10-21"
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {sim.base_url("openai")}
      api_key: os.environ/RH_OPENAI_KEY
  - model_name: "openai/*"
    litellm_params:
      model: "openai/*"
      api_base: {sim.base_url("openai")}
      api_key: os.environ/RH_OPENAI_KEY
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-haiku-latest
      api_base: {sim.base_url("anthropic")}/v1/messages
  - model_name: llama
    litellm_params:
      model: groq/llama-3.1-8b-instant
      api_base: {sim.base_url("groq")}
      api_key: {LITERAL_KEY}
  - model_name: llama
    litellm_params:
      model: ollama_chat/llama3:latest
      api_base: {sim.base_url("ollama")}/api/chat
{extra}
litellm_settings:
  drop_params: true
general_settings:
  master_key: sk-1234
""",
        encoding="utf-8",
    )
    return path


async def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [*ROUTER_HEALTH, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**cli_env(), **(ENV if env is None else env)},
        )


def no_secret_in(done: subprocess.CompletedProcess[bytes]) -> None:
    printed = done.stdout + done.stderr
    for key in (OPENAI_KEY, AZURE_KEY, ANTHROPIC_KEY, LITERAL_KEY):
        assert key.encode() not in printed


async def test_check_reads_a_litellm_config_and_checks_every_deployment(
    sim: Simulator, tmp_path: Path
) -> None:
    config = litellm_config(sim, tmp_path / "config.yaml")
    done = await run("check", "--config", str(config))
    out = done.stdout.decode()
    assert done.returncode == 0, (out, done.stderr.decode())
    rows = {tuple(line.split()[:3]) for line in out.splitlines()[1:] if line.strip()}
    host = sim.root_url.removeprefix("http://")
    assert {
        ("gpt-4o", f"azure@{host}/gpt-4o-eu", "healthy"),
        ("gpt-4o", f"openai-compatible@{host}", "healthy"),
        ("openai/*", f"openai-compatible@{host}", "healthy"),
        ("claude", f"anthropic@{host}", "healthy"),
        ("llama", f"groq@{host}", "healthy"),
        ("llama", f"ollama@{host}", "healthy"),
    } <= rows
    assert "status: healthy — 4/4 models healthy, 6/6 adapters healthy" in out
    no_secret_in(done)


async def test_serve_answers_the_health_api_for_a_litellm_config(
    sim: Simulator, tmp_path: Path
) -> None:
    config = litellm_config(sim, tmp_path / "litellm.yml")
    process = await trio.lowlevel.open_process(
        [*ROUTER_HEALTH, "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**cli_env(), **ENV},
    )
    try:
        base = await served_url(process)
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.get(f"{base}/v1/health/")
        assert answer.status_code == 200
        report = answer.json()
        assert report["status"] == "healthy"
        assert list(report["models"]) == ["gpt-4o", "openai/*", "claude", "llama"]
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            code = await process.wait()
        err = await read_stderr(process)
        assert code == 0, err
        assert "Traceback" not in err
        assert LITERAL_KEY not in err and LITERAL_KEY not in answer.text
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_an_unknown_prefix_is_reported_unsupported_and_strict_refuses_it(
    sim: Simulator, tmp_path: Path
) -> None:
    extra = "  - {model_name: jumpstart, litellm_params: {model: sagemaker/llama-2-7b}}\n"
    config = str(litellm_config(sim, tmp_path / "config.yaml", extra))
    done = await run("check", "--config", config, "--model", "jumpstart")
    out = done.stdout.decode()
    assert done.returncode != 3, done.stderr.decode()
    assert "unsupported" in out
    assert "no router-health adapter for LiteLLM provider prefix 'sagemaker/'" in out
    strict = await run("check", "--config", config, "--strict")
    assert strict.returncode == 3
    assert strict.stderr.decode().splitlines() == [
        "router-health: invalid config",
        f"{config}: model_list[6] (jumpstart).litellm_params.model: no router-health adapter for "
        "LiteLLM provider prefix 'sagemaker/'; --strict refuses a deployment router-health "
        "cannot check",
    ]


async def test_a_partial_wildcard_reports_the_listed_models_that_match_it(
    sim: Simulator, tmp_path: Path
) -> None:
    route = f"api_base: {sim.base_url('openai')}, api_key: os.environ/RH_OPENAI_KEY"
    extra = "".join(
        f"  - {{model_name: '{pattern}', litellm_params: {{model: 'openai/{pattern}', {route}}}}}\n"
        for pattern in ("gpt-4o-m*", "o9-*")
    )
    config = str(litellm_config(sim, tmp_path / "config.yaml", extra))
    matching = await run("check", "--config", config, "--model", "gpt-4o-m*", "--json")
    assert matching.returncode == 0, matching.stderr.decode()
    (result,) = json.loads(matching.stdout)["details"]["gpt-4o-m*"].values()
    assert (result["status"], result["listed_models"]) == ("healthy", ["gpt-4o-mini"])
    # nothing listed matches: the model the route serves is missing
    none = await run("check", "--config", config, "--model", "o9-*", "--json")
    (result,) = json.loads(none.stdout)["details"]["o9-*"].values()
    assert (result["status"], result["failure"]) == ("unhealthy", "model_missing")
    assert "no model in the provider's model list (2 entries) matches 'o9-*'" in result["error"]


async def test_import_prints_toml_that_checks_the_same_fleet(sim: Simulator, tmp_path: Path) -> None:
    config = litellm_config(sim, tmp_path / "config.yaml")
    done = await run("import", "litellm", str(config))
    assert done.returncode == 0, done.stderr.decode()
    no_secret_in(done)
    toml = tomllib.loads(done.stdout.decode())
    assert [m["name"] for m in toml["models"]] == ["gpt-4o", "openai/*", "claude", "llama"]
    # the key written in the file: an invented variable, named on stderr
    assert done.stderr.decode() == (
        "router-health: before serving it, export: LLAMA_GROQ_127_0_0_1_"
        f"{sim.root_url.rsplit(':', 1)[1]}_API_KEY\n"
    )
    invented = done.stderr.decode().split("export: ")[1].strip()
    imported = tmp_path / "imported.toml"
    imported.write_bytes(done.stdout)
    checked = await run("check", "--config", str(imported), env={**ENV, invented: LITERAL_KEY})
    yaml_checked = await run("check", "--config", str(config))
    assert checked.returncode == yaml_checked.returncode == 0, checked.stderr.decode()

    def rows(d: subprocess.CompletedProcess[bytes]) -> set[tuple[str, ...]]:
        return {tuple(line.split()[:3]) for line in d.stdout.decode().splitlines()[1:-2]}

    assert rows(checked) == rows(yaml_checked)


async def test_import_never_prints_a_key_written_in_the_file(tmp_path: Path) -> None:
    env = {"AZURE_API_BASE": "https://from-env.openai.azure.com", "AZURE_API_VERSION": "2024-10-21"}
    done = await run("import", "litellm", str(LITELLM_CONFIGS / "env_and_literals.yaml"), env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert b"rhtestkey" not in done.stdout + done.stderr
    assert "export GPT_4O_OPENAI_API_KEY=<that key> before serving" in done.stdout.decode()


async def test_import_of_invalid_yaml_is_one_line_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: [\n", encoding="utf-8")
    done = await run("import", "litellm", str(bad))
    assert done.returncode == 3
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        "router-health: invalid config",
        f"{bad}: line 4, column 1: invalid YAML: expected the node content, but found "
        "'<stream end>' (while parsing a flow node)",
    ]


async def test_import_refuses_a_bedrock_deployment_without_a_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_REGION_NAME"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n  - {model_name: nova, litellm_params: {model: bedrock/amazon.nova-lite-v1:0}}\n",
        encoding="utf-8",
    )
    no_region = {**ENV, "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config")}
    done = await run("import", "litellm", str(config), env=no_region)
    assert done.returncode == 3
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        "router-health: invalid config",
        f"{config}: model_list[0] (nova).litellm_params.aws_region_name: required: no region in "
        "the file, AWS_REGION_NAME, AWS_REGION, AWS_DEFAULT_REGION or the AWS profile; set "
        "aws_region_name: us-east-1 (LiteLLM would fall back to us-west-2 unasked)",
    ]
    named = await run(
        "import", "litellm", str(config), env={**no_region, "AWS_REGION_NAME": "eu-west-1"}
    )
    assert named.returncode == 0, named.stderr.decode()
    assert tomllib.loads(named.stdout.decode())["models"][0]["providers"][0]["region"] == "eu-west-1"


async def test_import_knows_only_litellm(tmp_path: Path) -> None:
    done = await run("import", "helicone", str(tmp_path / "x.yaml"))
    assert done.returncode == 3
    assert b"invalid choice: 'helicone'" in done.stderr


async def test_strict_refuses_unsupported_entries_of_a_toml_config_too(tmp_path: Path) -> None:
    config = tmp_path / "providers.toml"
    config.write_text(
        '[[models]]\nname = "m"\n\n  [[models.providers]]\n  name = "p"\n'
        '  type = "unsupported"\n  reason = "not checked here"\n',
        encoding="utf-8",
    )
    done = await run("check", "--config", str(config), "--strict")
    assert done.returncode == 3
    assert done.stderr.decode().splitlines() == [
        "router-health: invalid config",
        f'{config}: type "unsupported" entries refused by --strict: m / p',
    ]


async def test_check_names_the_bedrock_entry_no_region_is_found_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "providers.toml"
    config.write_text(
        '[[models]]\nname = "nova"\n\n  [[models.providers]]\n  name = "aws"\n'
        '  type = "bedrock"\n  model = "amazon.nova-lite-v1:0"\n',
        encoding="utf-8",
    )
    done = await run(
        "check", "--config", str(config), env={**ENV, "AWS_CONFIG_FILE": str(tmp_path / "none")}
    )
    assert done.returncode == 3
    assert done.stderr.decode().splitlines() == [
        "router-health: invalid config",
        f'{config}: models[0] (nova).providers[0].region: required for type "bedrock": set '
        'region = "us-east-1" or export AWS_REGION (none in AWS_DEFAULT_REGION, the base_url '
        "host or the AWS profile either)",
    ]
