"""Config hardening: no credential in a message, no control character in a name, no metadata target.

- A URL's userinfo, query and fragment never appear in a config error, however
  the URL is mistyped; a ``user:pass@`` in a provider's ``base_url`` (never
  sent) is an error that names ``api_key_env``.
- Names (models, providers, upstream model ids, options, the cluster's
  instance id) with control, format or bidi characters are refused, the
  character shown escaped, never raw; no message line can be forged.
- A provider's ``base_url`` or the webhook's ``url`` at a cloud metadata or
  link-local address, in any literal spelling, is refused unless
  ``[checks] allow_link_local = true``; private ranges stay allowed.

Secrets in these tests contain ``rhtestkey``; no test id contains one.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from service import ConfigError, parse_config
from service.config import ModelConfig, ProviderConfig
from service.config.cluster import display_redis_url
from service.config.webhook import WebhookConfig, display_url

SECRET = "rhtestkeyPw9"
USER = "rhtestkeyUser"


def problems(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(document, source="<test>", env={})
    message = str(info.value)
    assert "Traceback" not in message
    return message


def provider_doc(entry: dict[str, Any], checks: dict[str, Any] | None = None) -> dict[str, Any]:
    provider = {"name": "p", "type": "openai-compatible", **entry}
    return {"checks": checks or {}, "models": [{"name": "m", "providers": [provider]}]}


def webhook_doc(url: str, checks: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "checks": {"interval": 30, **(checks or {})},
        "webhook": {"url": url},
        "models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}],
    }


# -- 7. credentials in URLs --------------------------------------------------------

#: (id, base_url, what the message must say): every one hides SECRET and USER.
BAD_BASE_URLS = [
    ("userinfo", f"https://{USER}:{SECRET}@gw.example/v1", "api_key_env"),
    ("user-only", f"https://{SECRET}@gw.example/v1", "api_key_env"),
    ("query", f"https://gw.example/v1?key={SECRET}", "query"),
    ("fragment", f"https://gw.example/v1#{SECRET}", "fragment"),
    ("one-slash", f"https:/{USER}:{SECRET}@gw.example/v1", "http://"),
    ("no-scheme", f"{USER}:{SECRET}@gw.example", "http://"),
    ("no-scheme-query", f"gw.example:8000?key={SECRET}", "http://"),
    ("slash-in-password", f"https://{USER}:{SECRET}/x@gw.example/v1", "gw.example"),
    ("question-in-password", f"https://{USER}:12?{SECRET}@gw.example/v1", "gw.example"),
    ("token-as-port", f"https://token:{SECRET}/v1", "port"),
]


@pytest.mark.parametrize(
    ("url", "says"), [c[1:] for c in BAD_BASE_URLS], ids=[c[0] for c in BAD_BASE_URLS]
)
def test_a_bad_base_url_is_refused_without_echoing_its_credentials(url: str, says: str) -> None:
    message = problems(provider_doc({"base_url": url}))
    assert "base_url" in message and says in message
    assert "rhtestkey" not in message


def test_userinfo_in_a_base_url_is_an_error_naming_the_key_setting() -> None:
    message = problems(provider_doc({"base_url": f"https://{USER}:{SECRET}@gw.example/v1"}))
    assert "models[0] (m).providers[0].base_url" in message
    assert "never sent" in message and "api_key_env" in message
    assert "'https://gw.example/v1'" in message  # where it points, credentials left out


BAD_WEBHOOK_URLS = [
    ("one-slash", f"https:/{USER}:{SECRET}@hooks.example/h"),
    ("no-scheme", f"{USER}:{SECRET}@hooks.example/h"),
    ("slash-in-password", f"https://{USER}:{SECRET}/x@hooks.example/h"),
    ("bad-port", f"https://{USER}:{SECRET}@hooks.example:99999/h"),
    ("space", f"https://{USER}:{SECRET}@hooks.example/h ?t={SECRET}"),
]


@pytest.mark.parametrize(
    "url", [c[1] for c in BAD_WEBHOOK_URLS], ids=[c[0] for c in BAD_WEBHOOK_URLS]
)
def test_a_mistyped_webhook_url_never_shows_its_credentials(url: str) -> None:
    message = problems(webhook_doc(url))
    assert "webhook.url" in message
    assert "rhtestkey" not in message
    with pytest.raises(ValueError) as info:
        WebhookConfig(url=url)
    assert "rhtestkey" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@Example.com:8443/a/b?q=1#f", "https://Example.com:8443/a/b"),
        (f"https:/{USER}:{SECRET}@hooks.example/h", "https:/…@hooks.example/h"),
        (f"{USER}:{SECRET}@hooks.example/h", "…@hooks.example/h"),
        (f"https://{USER}:{SECRET}/x@hooks.example/h?t=1", "https://…@hooks.example/h"),
        (f"https://{SECRET}?x@hooks.example/h", "https://…@hooks.example/h"),
        (f"https://hooks.example/h?t={SECRET}#{SECRET}", "https://hooks.example/h"),
        ("localhost:11434", "localhost:11434"),
    ],
    ids=["well-formed", "one-slash", "no-scheme", "slash-in-password", "question-in-token",
         "query-and-fragment", "no-scheme-no-credentials"],
)
def test_display_url_leaves_out_credentials_however_the_url_is_mistyped(
    url: str, shown: str
) -> None:
    assert display_url(url) == shown


def test_display_redis_url_leaves_out_a_password_with_a_slash_or_question_mark() -> None:
    for url in (
        f"redis://{USER}:{SECRET}/x@cache:6379/0",
        f"redis://{USER}:{SECRET}?x@cache:6379/0",
        f"redis://:{SECRET}#x@cache:6379/0",
    ):
        shown = display_redis_url(url)
        assert "rhtestkey" not in shown and shown.endswith("@cache:6379/0")
    assert display_redis_url("redis://default:pw@cache:6379/0") == "redis://cache:6379/0"


# -- 8. control characters in names ------------------------------------------------

CONTROL = {
    "newline": "\n",
    "carriage-return": "\r",
    "nul": "\x00",
    "escape": "\x1b",
    "del": "\x7f",
    "c1-next-line": "\x85",
    "bidi-override-rtl": "\u202e",
    "bidi-isolate": "\u2066",
    "zero-width-joiner": "\u200d",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
}
OLLAMA = {"name": "p", "type": "ollama"}
WHERE = {
    "model-name": lambda bad: {"models": [{"name": f"gpt{bad}4", "providers": [OLLAMA]}]},
    "provider-name": lambda bad: {
        "models": [{"name": "m", "providers": [{**OLLAMA, "name": f"p{bad}x"}]}]
    },
    "upstream-model": lambda bad: {
        "models": [{"name": "m", "providers": [{**OLLAMA, "model": f"llama{bad}3"}]}]
    },
    "deployment": lambda bad: {"models": [{"name": "m", "providers": [
        {"name": "p", "type": "azure", "base_url": "https://r.example", "api_key": "k",
         "deployment": f"d{bad}1"}]}]},
    "instance-id": lambda bad: {
        "checks": {"interval": 30},
        "cluster": {"redis_url": "redis://cache:6379/0", "instance_id": f"node{bad}1"},
        "models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}],
    },
}
KEY_PATH = {
    "model-name": "models[0].name",
    "provider-name": "models[0] (m).providers[0].name",
    "upstream-model": "models[0] (m).providers[0].model",
    "deployment": "models[0] (m).providers[0].deployment",
    "instance-id": "cluster.instance_id",
}


@pytest.mark.parametrize("char", list(CONTROL.values()), ids=list(CONTROL))
@pytest.mark.parametrize("where", list(WHERE))
def test_a_control_or_bidi_character_in_a_name_is_refused_and_shown_escaped(
    where: str, char: str
) -> None:
    message = problems(WHERE[where](char))
    lines = message.split("\n")
    assert len(lines) == 1, "a name must not add or split a line of the message"
    assert char not in message
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") for c in message)
    assert KEY_PATH[where] in message
    code = f"U+{ord(char):04X}"
    assert code in message  # which character, by its code point
    assert "remove" in message  # how to fix it


def test_every_problem_in_a_model_with_a_bad_name_is_still_reported_on_its_own_line() -> None:
    document = {"models": [{"name": "gpt\n4", "providers": [
        {"name": "p\u202e", "type": "ollama", "timeout": -1}]}]}
    lines = problems(document).split("\n")
    assert len(lines) == 3, lines
    assert all("\n" not in line and "\u202e" not in line for line in lines)
    assert any("timeout" in line for line in lines)
    assert all(line.startswith("<test>: models[0]") for line in lines)


def test_an_unknown_key_with_a_control_character_cannot_forge_a_line() -> None:
    document = {"checks": {"timeout\n<test>: all good": 3},
                "models": [{"name": "m", "providers": [{"name": "p", "type": "ollama"}]}]}
    lines = problems(document).split("\n")
    assert len(lines) == 1 and "unknown key" in lines[0]


def test_settings_built_in_code_refuse_such_names_too() -> None:
    with pytest.raises(ValueError, match="U\\+000A"):
        ModelConfig("gpt\n4", ())
    with pytest.raises(ValueError, match="U\\+0000"):
        ProviderConfig(name="p\x00", type="ollama", base_url="http://127.0.0.1:11434", model="m")
    with pytest.raises(ValueError, match="U\\+202E"):
        ProviderConfig(name="p", type="azure", base_url="https://r.example", model="m",
                       options={"deployment": "d\u202e"})


def test_names_in_other_scripts_and_with_spaces_stay_valid() -> None:
    provider = {"name": "Ollama local", "type": "ollama", "model": "llama3:8b-instruct"}
    config = parse_config({"models": [{"name": "模型 gpt-4 (é)", "providers": [provider]}]}, env={})
    assert config.models[0].name == "模型 gpt-4 (é)"


def test_a_tag_with_a_control_character_is_refused() -> None:
    message = problems({"models": [{"name": "m", "tags": ["prod\n"], "providers": [
        {"name": "p", "type": "ollama"}]}]})
    assert "tags" in message and len(message.split("\n")) == 1


# -- 11. metadata and link-local targets -------------------------------------------

METADATA_URLS = {
    "aws-ipv4": "http://169.254.169.254/latest/meta-data/",
    "ecs": "http://169.254.170.2/v2/credentials",
    "link-local": "http://169.254.1.1:8000/v1",
    "mapped-ipv6": "http://[::ffff:169.254.169.254]/",
    "mapped-ipv6-hex": "http://[::ffff:a9fe:a9fe]/",
    "decimal": "http://2852039166/",
    "hex": "http://0xa9fea9fe/",
    "octal": "http://0251.0376.0251.0376/",
    "hex-dotted": "http://0xa9.0xfe.0xa9.0xfe/",
    "short-form": "http://169.254.43518/",
    "trailing-dot": "http://169.254.169.254./",
    "aws-ipv6": "http://[fd00:ec2::254]/",
    "aws-ipv6-upper": "http://[FD00:EC2::254]:80/",
    "ipv6-link-local": "http://[fe80::1]:11434/",
    "ipv6-link-local-zone": "http://[fe80::1%25eth0]:11434/",
    "nat64": "http://[64:ff9b::a9fe:a9fe]/",
    "alibaba": "http://100.100.100.200/latest/meta-data/",
}
PRIVATE_URLS = {
    "ten": "http://10.0.0.5:8000/v1",
    "172-16": "http://172.16.4.2:8000/v1",
    "192-168": "http://192.168.1.10:11434",
    "loopback": "http://127.0.0.1:11434",
    "loopback-v6": "http://[::1]:11434",
    "ula": "http://[fd12:3456::1]:8000/v1",
    "name": "http://ollama.internal:11434",
    "cgnat": "http://100.64.0.7:8000/v1",
    "decimal-private": "http://167772165:8000/v1",  # 10.0.0.5
}


@pytest.mark.parametrize("url", list(METADATA_URLS.values()), ids=list(METADATA_URLS))
def test_a_base_url_at_a_metadata_or_link_local_address_is_refused(url: str) -> None:
    message = problems(provider_doc({"base_url": url}))
    assert "models[0] (m).providers[0].base_url" in message
    assert "allow_link_local = true" in message
    assert "metadata" in message or "link-local" in message
    config = parse_config(provider_doc({"base_url": url}, {"allow_link_local": True}), env={})
    assert config.models[0].providers[0].base_url == url
    assert config.checks.allow_link_local is True


@pytest.mark.parametrize("url", list(METADATA_URLS.values()), ids=list(METADATA_URLS))
def test_a_webhook_url_at_a_metadata_or_link_local_address_is_refused(url: str) -> None:
    message = problems(webhook_doc(url + "hook"))
    assert "webhook.url" in message and "allow_link_local = true" in message
    if url == METADATA_URLS["octal"]:
        return  # httpx, which sends the webhook, takes no octal address: invalid anyway
    config = parse_config(webhook_doc(url + "hook", {"allow_link_local": True}), env={})
    assert config.webhook is not None


@pytest.mark.parametrize("url", list(PRIVATE_URLS.values()), ids=list(PRIVATE_URLS))
def test_private_addresses_stay_allowed(url: str) -> None:
    config = parse_config(provider_doc({"base_url": url}), env={})
    assert config.models[0].providers[0].base_url == url
    assert config.checks.allow_link_local is False
    assert parse_config(webhook_doc(url), env={}).webhook is not None


def test_allow_link_local_must_be_true_or_false() -> None:
    message = problems(provider_doc({}, {"allow_link_local": "yes"}))
    assert "checks.allow_link_local: must be true or false" in message
