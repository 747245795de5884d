"""``[[alerts]]``: defaults, filters held against the models, and a precise message for every bad key.

The URL is checked by Apprise itself at load; a message about it shows its
scheme and nothing more. Secret-looking values use the ``rhtesttoken`` prefix
CI greps a whole run's log for.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Secret
from service.config import AlertChannelConfig, ConfigError, parse_config
from service.config.alerts import alert_url_secrets, display_alert_url
from tests.support.configs import problems as file_problems

TOKEN = "rhtesttoken-alerts-config-5f0e2b"
GOTIFY = f"gotify://gotify.example/{TOKEN}"
MODELS: list[dict[str, Any]] = [
    {
        "name": "gpt-4",
        "tags": ["prod"],
        "providers": [
            {"name": "openai", "type": "ollama", "tags": ["us"]},
            {"name": "azure", "type": "ollama", "tags": ["eu"]},
        ],
    },
    {"name": "claude", "providers": [{"name": "anthropic", "type": "ollama"}]},
]


def document(alerts: object, checks: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"checks": {"interval": 10.0} if checks is None else checks, "models": MODELS,
            "alerts": alerts}


def parse(alerts: object, env: dict[str, str] | None = None) -> tuple[AlertChannelConfig, ...]:
    return parse_config(document(alerts), env=env or {}).alerts


def problems(alerts: object, *, env: dict[str, str] | None = None, **doc: Any) -> list[str]:
    """Every problem line (without the source), for a config that must fail."""
    with pytest.raises(ConfigError) as caught:
        parse_config({**document(alerts), **doc}, env=env or {})
    message = str(caught.value)
    assert TOKEN not in message
    assert "Traceback" not in message
    return [line.removeprefix("<config>: ") for line in message.splitlines()]


def one_problem(entry: dict[str, Any], **doc: Any) -> str:
    found = problems([{"url": GOTIFY, **entry}], **doc)
    assert len(found) == 1, found
    return found[0]


# -- what a valid entry gives -------------------------------------------------------


def test_an_entry_with_only_a_url_takes_the_defaults() -> None:
    (channel,) = parse([{"url": GOTIFY}])
    assert channel.url == Secret(GOTIFY)
    assert (channel.name, channel.on, channel.models, channel.tags) == (
        "alerts[0]", ("down", "recovered"), (), (),
    )
    assert (channel.min_duration, channel.repeat_every, channel.digest) == (0.0, 0.0, 0.0)
    assert (channel.title, channel.timeout) == ("", 15.0)


def test_every_key_is_read() -> None:
    (channel,) = parse([{
        "url": GOTIFY, "name": "ops-gotify", "on": ["down", "degraded"], "models": ["gpt-4"],
        "tags": ["eu"], "min_duration": 60, "repeat_every": 1800, "digest": 30,
        "title": "[prod]", "timeout": 5,
    }])
    assert channel == AlertChannelConfig(
        url=Secret(GOTIFY), name="ops-gotify", on=("down", "degraded"), models=("gpt-4",),
        tags=("eu",), min_duration=60.0, repeat_every=1800.0, digest=30.0, title="[prod]",
        timeout=5.0,
    )
    assert channel.wants("gpt-4", frozenset({"prod", "eu"}))
    assert not channel.wants("gpt-4", frozenset({"prod", "us"}))
    assert not channel.wants("claude", frozenset({"eu"}))


def test_the_url_may_come_from_the_environment() -> None:
    (channel,) = parse([{"url_env": "ALERTS_URL"}], env={"ALERTS_URL": GOTIFY})
    assert channel.url.reveal() == GOTIFY


def test_several_channels_keep_their_order_and_names() -> None:
    channels = parse([
        {"url": GOTIFY, "name": "gotify"},
        {"url": "ntfy://ntfy.example/ops-topic"},
        {"url": "json://alerts.example/hook", "name": "hook"},
    ])
    assert [c.name for c in channels] == ["gotify", "alerts[1]", "hook"]


@pytest.mark.parametrize(
    "url",
    [
        "slack://TokenA/TokenB/TokenC",
        "https://hooks.slack.com/services/T1234/B5678/abcdefghijkl",  # Slack's own URL
        "discord://1234567/abcdefgh",
        "tgram://123456:ABCDEFG/12345",
        "mailtos://user:password@mail.example?to=ops@example.com",
        "json://user:password@alerts.example:8443/hook?x=1",
        "ntfys://ntfy.example/topic",
    ],
)
def test_apprise_urls_of_many_services_are_accepted(url: str) -> None:
    (channel,) = parse([{"url": url}])
    assert channel.display_url == url.split("://")[0] + "://…"


def test_no_alerts_is_no_channels() -> None:
    assert parse_config({"checks": {"interval": 10.0}, "models": MODELS}, env={}).alerts == ()
    assert parse([]) == ()


# -- the URL ------------------------------------------------------------------------


def test_an_unknown_scheme_says_so_and_suggests_a_close_one() -> None:
    message = one_problem({"url": f"gotifi://gotify.example/{TOKEN}"})
    assert message.startswith(
        "alerts[0].url: has a scheme Apprise does not know (gotifi://); did you mean gotify://"
    )
    assert "https://github.com/caronc/apprise/wiki" in message
    assert message.endswith(", got 'gotifi://…'")


def test_a_url_its_service_cannot_use_quotes_apprise_with_the_token_masked() -> None:
    message = one_problem({"url": "gotify://gotify.example/"})
    assert message == (
        "alerts[0].url: is not a usable gotify:// URL: Apprise says 'An invalid Gotify Token "
        "(None) was specified.'; see https://appriseit.com/services/gotify/ for its form, "
        "got 'gotify://…'"
    )


def test_a_plain_http_url_is_pointed_at_json() -> None:
    message = one_problem({"url": f"https://alerts.example/hook/{TOKEN}"})
    assert "write json:// (or jsons://) instead of http:// (https://)" in message
    assert message.endswith("got 'https://…'")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "alerts[0].url: is empty: write the Apprise URL, or remove url"),
        (f"gotify://gotify.example/{TOKEN} x", "must not contain spaces or control characters"),
        (f"{TOKEN}", "must be an Apprise URL, scheme://..., e.g. slack://TokenA/TokenB/TokenC"),
    ],
)
def test_a_malformed_url_is_refused_before_apprise_sees_it(url: str, expected: str) -> None:
    assert expected in one_problem({"url": url})


def test_a_metadata_address_is_refused_without_showing_the_path() -> None:
    message = one_problem({"url": f"gotify://169.254.169.254/{TOKEN}"})
    assert message.startswith(
        "alerts[0].url: points at 169.254.169.254, a cloud metadata address"
    )
    assert "got 'gotify://…'" in message and "allow_link_local = true" in message


def test_a_metadata_address_is_accepted_with_allow_link_local() -> None:
    config = parse_config(
        document([{"url": f"gotify://169.254.169.254/{TOKEN}"}],
                 {"interval": 10.0, "allow_link_local": True}),
        env={},
    )
    assert len(config.alerts) == 1


def test_url_and_url_env_are_one_or_the_other_and_one_is_needed() -> None:
    assert one_problem({"url_env": "X"}) == "alerts[0]: set url_env or url, not both"
    found = problems([{"name": "ops"}])
    assert found == [
        'alerts[0]: needs url_env (the name of an environment variable holding the channel\'s '
        'Apprise URL, e.g. url_env = "SLACK_ALERTS_URL") or url'
    ]


def test_url_env_naming_an_unset_variable_says_what_to_export() -> None:
    found = problems([{"url_env": "ALERTS_URL"}])
    assert found == [
        "alerts[0].url_env: environment variable ALERTS_URL is not set (or empty); export "
        "ALERTS_URL=slack://TokenA/TokenB/TokenC before starting, or remove this [[alerts]] entry"
    ]


def test_a_url_pasted_into_url_env_is_not_echoed() -> None:
    (message,) = problems([{"url_env": GOTIFY}])
    assert message.startswith("alerts[0].url_env: is not an environment variable name")


def test_a_url_of_the_wrong_type_is_not_echoed() -> None:
    found = problems([{"url": [GOTIFY], "url_env": {"x": GOTIFY}}])
    assert found == [
        "alerts[0].url: must be a string, got a list",
        "alerts[0].url_env: must be a string, got a dict",
    ]


def test_without_apprise_installed_the_message_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise raises ImportError
    found = problems([{"url": GOTIFY}, {"url": "ntfy://ntfy.example/topic"}])
    assert found == [
        "alerts: [[alerts]] sends through the Apprise library, which is not installed: "
        "pip install 'router-health[alerts]' (or remove [[alerts]])"
    ]


def test_apprise_logs_nothing_while_a_url_is_checked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)  # Apprise's TRACE level (9) quotes every token of a URL
    problems([{"url": f"gotify://gotify.example/{TOKEN}/x?bad=1", "on": []}])
    problems([{"url": f"slack://{TOKEN}"}])
    parse([{"url": GOTIFY}])
    assert TOKEN not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("apprise")]


# -- every other key ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"nme": "x"}, "alerts[0].nme: unknown key; did you mean 'name'?"),
        ({"name": 3}, "alerts[0].name: must be a string, got 3"),
        ({"name": " "}, "alerts[0].name: is empty: write a label for logs and metrics"),
        ({"name": "x" * 65}, "alerts[0].name: must be at most 64 characters, got 65"),
        ({"name": "ops\nslack"}, "alerts[0].name: 'ops\\nslack' contains U+000A (LINE FEED)"),
        ({"on": "down"}, "alerts[0].on: must be a list, got 'down'"),
        ({"on": []}, "alerts[0].on: is empty: a channel told nothing is no channel; expected a "
                     "non-empty list of 'down', 'recovered', 'degraded'"),
        ({"on": ["dwn"]}, "alerts[0].on: unknown event 'dwn' (did you mean 'down'?)"),
        ({"on": ["down", "down"]}, "alerts[0].on: lists an event more than once"),
        ({"models": "gpt-4"}, "alerts[0].models: must be a list, got 'gpt-4'"),
        ({"models": [1]}, "alerts[0].models: must be a list of model names (non-empty strings), "
                          "got 1"),
        ({"models": ["gpt-4", "gpt-4"]}, "alerts[0].models: lists 'gpt-4' more than once"),
        ({"models": ["gpt-5"]}, "alerts[0].models: 'gpt-5' is not a configured model; the "
                                "models are: 'gpt-4', 'claude'"),
        ({"models": ["gpt-5", "o9"]}, "alerts[0].models: 'gpt-5', 'o9' are not configured "
                                      "models"),
        ({"tags": "eu"}, "alerts[0].tags: must be a list, got 'eu'"),
        ({"tags": ["e u"]}, "alerts[0].tags: 'e u' is not a valid tag"),
        ({"tags": ["eu", "eu"]}, "alerts[0].tags: lists 'eu' more than once"),
        ({"tags": [f"t{i}" for i in range(33)]}, "alerts[0].tags: at most 32 tags, got 33"),
        ({"min_duration": -1}, "alerts[0].min_duration: must be a finite number of seconds >= 0 "
                               "(0 = off), got -1"),
        ({"min_duration": "1m"}, "alerts[0].min_duration: must be a number, got '1m'"),
        ({"repeat_every": float("inf")}, "alerts[0].repeat_every: must be a finite number"),
        ({"repeat_every": True}, "alerts[0].repeat_every: must be a number, got True"),
        ({"digest": 3601}, "alerts[0].digest: must be at most 3600 seconds (a digest holds "
                           "every alert back until it closes), got 3601"),
        ({"digest": float("nan")}, "alerts[0].digest: must be a finite number of seconds"),
        ({"timeout": 0}, "alerts[0].timeout: must be a finite number of seconds > 0, got 0"),
        ({"timeout": 301}, "alerts[0].timeout: must be at most 300 seconds, got 301"),
        ({"title": 1}, "alerts[0].title: must be a string, got 1"),
        ({"title": "x" * 101}, "alerts[0].title: must be at most 100 characters, got 101"),
        ({"title": "[prod]\u202e"}, "alerts[0].title: '[prod]\\u202e' contains U+202E"),
    ],
)
def test_each_bad_value_is_named_with_its_key(entry: dict[str, Any], expected: str) -> None:
    assert one_problem(entry).startswith(expected)


def test_a_filter_that_selects_no_adapter_is_refused() -> None:
    assert one_problem({"models": ["claude"], "tags": ["eu"]}) == (
        "alerts[0]: no adapter of models ['claude'] carries every tag of ['eu'], so this "
        "channel would never send anything: fix models / tags, or remove the entry"
    )
    assert one_problem({"tags": ["asia"]}).startswith("alerts[0]: no adapter of any model")


def test_two_channels_may_not_share_a_name() -> None:
    found = problems([{"url": GOTIFY, "name": "ops"}, {"url": GOTIFY, "name": "ops"}])
    assert found == [
        "alerts[1].name: 'ops' is already the name of alerts[0]: names label logs and metrics, "
        "so give each channel its own"
    ]


def test_every_problem_of_every_entry_is_reported_at_once() -> None:
    found = problems([
        {"url": GOTIFY, "on": ["up"], "digest": -1},
        {"url": "gotifi://x/y", "timeout": 0},
    ])
    assert [line.split(":")[0] for line in found] == [
        "alerts[0].on", "alerts[0].digest", "alerts[1].url", "alerts[1].timeout",
    ]


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ({"url": GOTIFY}, "alerts: must be an array of tables, one per channel, e.g.\n"),
        ([GOTIFY], "alerts: must be an array of tables"),
        ([{"url": GOTIFY}] * 33, "alerts: at most 32 channels, got 33"),
    ],
)
def test_alerts_must_be_an_array_of_tables(alerts: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(alerts)
    assert f"<config>: {expected}" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_alerts_need_background_checks() -> None:
    found = problems([{"url": GOTIFY}], checks={"interval": 0})
    assert found == [
        "alerts: alerts follow the transitions of background checks: set [checks] interval > 0, "
        "or remove [[alerts]]"
    ]


def test_a_config_file_with_alerts_loads_and_its_errors_name_the_file(tmp_path: Path) -> None:
    text = (
        '[checks]\ninterval = 10\n\n[[models]]\nname = "m"\n[[models.providers]]\n'
        'name = "local"\ntype = "ollama"\n\n'
        f'[[alerts]]\nurl = "{GOTIFY}"\nname = "ops"\nmin_duration = 1.5\n\n'
        '[[alerts]]\nurl = "gotifi://x/y"\n'
    )
    message = file_problems(text, tmp_path)
    assert message.endswith("providers.toml: alerts[1].url: has a scheme Apprise does not know "
                            "(gotifi://); did you mean gotify://, gotifys://, notifico://? the "
                            "services and their URLs: https://github.com/caronc/apprise/wiki, "
                            "got 'gotifi://…'")


# -- the settings object ----------------------------------------------------------------


def test_the_settings_object_validates_like_the_parser() -> None:
    with pytest.raises(ValueError, match=r"alerts on unknown event 'up'"):
        AlertChannelConfig(url=Secret(GOTIFY), on=("up",))
    with pytest.raises(ValueError, match=r"alerts url has a scheme Apprise does not know") as e:
        AlertChannelConfig(url=Secret(f"gotifi://x/{TOKEN}"))
    assert TOKEN not in str(e.value)
    with pytest.raises(TypeError, match="alert url must be a Secret"):
        AlertChannelConfig(url=GOTIFY)  # type: ignore[arg-type]


def test_repr_and_display_show_the_scheme_only() -> None:
    config = AlertChannelConfig(url=Secret(f"json://user:{TOKEN}@alerts.example/hook"))
    assert repr(config).startswith("AlertChannelConfig(url='json://…', name='alerts'")
    assert TOKEN not in repr(config) and TOKEN not in str(config)
    assert display_alert_url("not a url") == "…"


def test_the_secrets_are_every_token_of_the_url_but_host_names_ports_and_query_keys() -> None:
    secrets = alert_url_secrets(
        f"json://user:{TOKEN}@alerts.example:8443/hook/{TOKEN}2?key=rhtesttoken-q&x=1"
    )
    assert TOKEN in secrets and f"{TOKEN}2" in secrets and "rhtesttoken-q" in secrets
    assert "user" in secrets and "hook" in secrets
    assert "alerts.example" not in secrets and "8443" not in secrets and "key" not in secrets
    # A host without a dot may be a token (slack://TokenA/..., tgram://bot_token/...).
    assert "TokenA" in alert_url_secrets("slack://TokenA/TokenB/TokenC")


def test_apprise_records_during_a_check_are_dropped_not_just_hidden() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(level=1)
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addHandler(handler)
    try:
        problems([{"url": f"slack://{TOKEN}"}])
    finally:
        apprise_logger.removeHandler(handler)
    assert seen == []
