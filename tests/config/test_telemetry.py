"""``[telemetry]``: off by default, the OTEL_* variables applied, precise messages, headers never shown."""

from __future__ import annotations

from typing import Any

import pytest

# Tracing asked for without the extra is a config error: tests/engine/test_telemetry.py covers that.
pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from adapters.base import Secret
from service.config import ConfigError, TelemetryConfig, parse_config

MODELS: list[dict[str, Any]] = [{"name": "m", "providers": [{"name": "local", "type": "ollama"}]}]
#: A header value shaped like nothing a redactor knows: only "never shown" keeps it out.
HEADER_VALUE = "rhtest-otlp-header-7f3a9c"


def parse(telemetry: object = None, env: dict[str, str] | None = None) -> TelemetryConfig:
    data: dict[str, Any] = {"models": MODELS}
    if telemetry is not None:
        data["telemetry"] = telemetry
    return parse_config(data, env=env or {}).telemetry


def problems(telemetry: object = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(telemetry, env)
    message = str(caught.value)
    assert HEADER_VALUE not in message
    return message


def test_tracing_is_off_without_a_table_or_variables() -> None:
    assert parse() == TelemetryConfig()
    assert not TelemetryConfig().enabled


def test_enabled_alone_exports_to_the_local_collector_as_router_health() -> None:
    config = parse({"enabled": True})
    assert config.enabled
    assert config.enabled_by == "[telemetry] enabled = true"
    assert config.endpoint == "http://localhost:4318/v1/traces"
    assert config.service_name == "router-health"
    assert config.sample_ratio == 1.0
    assert config.headers == ()


def test_the_general_endpoint_variable_turns_tracing_on_and_gets_the_traces_path() -> None:
    config = parse(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert config.enabled
    assert config.enabled_by == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert config.endpoint == "http://collector:4318/v1/traces"


def test_the_traces_endpoint_variable_is_used_as_it_is_and_wins() -> None:
    config = parse(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/otlp/spans",
        }
    )
    assert config.endpoint == "https://traces.example/otlp/spans"


@pytest.mark.parametrize(
    ("endpoint", "used"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("https://otlp.example/otlp/", "https://otlp.example/otlp/v1/traces"),
        ("https://api.example/v1/traces", "https://api.example/v1/traces"),
    ],
)
def test_the_files_endpoint_is_a_base_url_and_turns_tracing_on(endpoint: str, used: str) -> None:
    config = parse({"endpoint": endpoint}, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"})
    assert config.enabled
    assert config.enabled_by == "[telemetry] endpoint"
    assert config.endpoint == used


def test_otlp_as_the_traces_exporter_turns_tracing_on() -> None:
    assert parse(env={"OTEL_TRACES_EXPORTER": "otlp"}).enabled_by == "OTEL_TRACES_EXPORTER=otlp"


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
    ],
)
def test_the_variables_that_say_no_turn_it_off(env: dict[str, str]) -> None:
    assert not parse(env=env).enabled


def test_sdk_disabled_wins_over_the_file() -> None:
    assert not parse({"enabled": True}, env={"OTEL_SDK_DISABLED": "TRUE"}).enabled


def test_enabled_false_wins_over_the_variables() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "otlp"}
    assert not parse({"enabled": False, "endpoint": "http://c:4318"}, env=env).enabled


def test_otel_service_name_wins_over_the_file_as_the_specification_says() -> None:
    assert parse({"enabled": True, "service_name": "health-eu"}).service_name == "health-eu"
    config = parse(
        {"enabled": True, "service_name": "health-eu"}, env={"OTEL_SERVICE_NAME": "from-env"}
    )
    assert config.service_name == "from-env"


def test_headers_come_from_the_variable_headers_env_names_percent_decoded() -> None:
    config = parse(
        {"enabled": True, "headers_env": "OTLP_HEADERS"},
        env={"OTLP_HEADERS": f"Authorization=Bearer%20{HEADER_VALUE}, X-Scope-OrgID=tenant-1"},
    )
    assert config.headers == (
        ("authorization", Secret(f"Bearer {HEADER_VALUE}")),
        ("x-scope-orgid", Secret("tenant-1")),
    )
    assert HEADER_VALUE not in repr(config)
    assert config.secrets == [Secret(f"Bearer {HEADER_VALUE}"), Secret("tenant-1")]


def test_a_sample_ratio_is_kept_as_a_float() -> None:
    assert parse({"enabled": True, "sample_ratio": 0}).sample_ratio == 0.0
    assert parse({"enabled": True, "sample_ratio": 0.25}).sample_ratio == 0.25


@pytest.mark.parametrize("ratio", [1.5, -0.1, float("nan"), float("inf")])
def test_a_sample_ratio_outside_0_to_1_is_refused(ratio: float) -> None:
    message = problems({"enabled": True, "sample_ratio": ratio})
    assert "telemetry.sample_ratio: must be the fraction of runs and probes to trace, from 0 to 1" in (
        message
    )


@pytest.mark.parametrize(
    ("telemetry", "expected"),
    [
        ({"enabled": "yes"}, "telemetry.enabled: must be true or false, got 'yes'"),
        ({"enabled": True, "sample_ratio": "all"}, "telemetry.sample_ratio: must be a number"),
        ({"enabled": True, "endpoint": 4318}, "telemetry.endpoint: must be a string, got 4318"),
        ({"enabled": True, "endpont": "x"}, "telemetry.endpont: unknown key; did you mean 'endpoint'?"),
        ({"enabled": True, "service_name": " "}, 'telemetry.service_name: is empty: name the service'),
        ({"enabled": True, "service_name": "a\nb"}, "telemetry.service_name: "),
        ("on", "telemetry: must be a table, e.g. [telemetry]"),
    ],
)
def test_bad_values_are_named_with_their_key(telemetry: object, expected: str) -> None:
    assert expected in problems(telemetry)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("collector:4318", "must start with http:// or https://"),
        ("http://user:secret-pass@collector:4318", "must not carry user:password@"),
        ("http://collector:4318/v1/traces?token=abc", "must not have a query or fragment"),
        ("http://169.254.169.254/v1/traces", "refused because a metadata service"),
    ],
)
def test_a_bad_endpoint_is_refused_without_showing_credentials(endpoint: str, expected: str) -> None:
    message = problems({"endpoint": endpoint})
    assert "telemetry.endpoint: " in message
    assert expected in message
    assert "secret-pass" not in message
    assert "token=abc" not in message


def test_a_bad_endpoint_variable_is_named() -> None:
    message = problems(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    assert "telemetry: OTEL_EXPORTER_OTLP_ENDPOINT must start with http:// or https://" in message


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"])
def test_grpc_is_refused_with_what_to_set_instead(variable: str) -> None:
    message = problems({"enabled": True}, env={variable: "grpc"})
    assert (
        f"telemetry: {variable}=grpc: router-health exports OTLP over HTTP as protobuf; "
        f"set {variable}=http/protobuf"
    ) in message


def test_another_traces_exporter_is_refused() -> None:
    message = problems(env={"OTEL_TRACES_EXPORTER": "console"})
    assert "telemetry: OTEL_TRACES_EXPORTER=console: router-health exports traces over OTLP only" in (
        message
    )


def test_an_unset_headers_variable_is_named() -> None:
    message = problems({"enabled": True, "headers_env": "OTLP_HEADERS"})
    assert (
        "telemetry.headers_env: environment variable OTLP_HEADERS is not set (or empty); "
        "export it as the OTLP headers"
    ) in message


def test_headers_pasted_into_headers_env_are_not_shown() -> None:
    message = problems({"enabled": True, "headers_env": f"Authorization=Bearer {HEADER_VALUE}"})
    assert "telemetry.headers_env: is not an environment variable name" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"Authorization Bearer {HEADER_VALUE}", "OTLP_HEADERS: header 1 has no '='"),
        (f"ok=1,bad name={HEADER_VALUE}", "OTLP_HEADERS: header 2 has a name that is not an HTTP"),
        ("Authorization=", "OTLP_HEADERS: header 1 (Authorization) has an empty value"),
        (f"Authorization={HEADER_VALUE}%0A", "OTLP_HEADERS: header 1 (Authorization) has an empty "
                                             "value or one with control characters"),
    ],
)
def test_malformed_headers_are_named_by_position_never_by_value(value: str, expected: str) -> None:
    message = problems({"enabled": True, "headers_env": "OTLP_HEADERS"}, env={"OTLP_HEADERS": value})
    assert f"telemetry.headers_env: {expected}" in message
    assert "values are not shown" in message


def test_malformed_standard_header_variables_are_refused_too() -> None:
    # The exporter would log a malformed entry whole, value and all.
    message = problems(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization {HEADER_VALUE}",
        }
    )
    assert "telemetry: OTEL_EXPORTER_OTLP_HEADERS: header 1 has no '='" in message


def test_every_problem_is_reported_at_once() -> None:
    message = problems(
        {"enabled": True, "endpoint": "nope", "sample_ratio": 2, "headers_env": "UNSET_HEADERS"},
        env={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    )
    for key in ("telemetry.endpoint:", "telemetry.sample_ratio:", "telemetry.headers_env:",
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"):
        assert key in message


def test_a_config_built_by_hand_checks_its_ratio() -> None:
    with pytest.raises(ValueError, match="sample_ratio must be from 0 to 1"):
        TelemetryConfig(enabled=True, sample_ratio=2.0)
