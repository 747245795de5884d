"""``router-health import litellm``: a LiteLLM config as router-health TOML, without its secrets.

A key or header value written in the LiteLLM file is never printed: the
TOML names an environment variable for it instead (``api_key_env``,
``headers_env``) with a comment saying which one to export. The result is
validated as it will be loaded, with any variable not set yet standing in
for the secret it will hold, so the printed file loads once they are set.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .litellm import LiteLLMDocument, litellm_document
from .litellm_yaml import parse_yaml
from .parse import parse_config
from .values import ConfigError
from .writer import dump_toml

__all__ = ["ImportedConfig", "import_litellm"]

#: What an unset variable holds while the result is validated (never printed).
_STAND_IN: Final = "router-health-import-stand-in"
#: The variable names given a stand-in: conventional upper-case names only, so
#: a key pasted where a name belongs is still reported (unshown) by parse_config.
_CONVENTIONAL_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]*")
_ENV_KEYS: Final = (
    "api_key_env",
    "aws_access_key_id_env",
    "aws_secret_access_key_env",
    "aws_session_token_env",
)


@dataclass(frozen=True, slots=True)
class ImportedConfig:
    """The TOML text, and the environment variables it reads that are not set here."""

    toml: str
    #: Every variable the TOML reads that is unset now, in order of first use.
    unset: tuple[str, ...]
    #: The variables invented for keys and header values written in the file.
    invented: tuple[str, ...]


def import_litellm(
    raw: bytes | str,
    *,
    source: str = "<litellm config>",
    env: Mapping[str, str] | None = None,
    strict: bool = False,
) -> ImportedConfig:
    """A LiteLLM config's text as router-health TOML. Raises :class:`ConfigError`."""
    env = os.environ if env is None else env
    mapped = litellm_document(parse_yaml(raw, source=source), source=source, env=env, strict=strict)
    document, notes, invented = _without_literal_secrets(mapped)
    unset = [name for name in _env_names(document) if not env.get(name)]
    stand_ins = {name: _STAND_IN for name in unset if _CONVENTIONAL_NAME.fullmatch(name)}
    try:
        parse_config(document, source=source, env={**env, **stand_ins})
    except ConfigError as exc:
        raise mapped.explain(exc) from None
    header = [
        f"router-health config imported from {os.path.basename(source)} (a LiteLLM proxy config)",
        "by `router-health import litellm`; each provider names the model_list entry it came from.",
    ]
    return ImportedConfig(
        dump_toml(document, header=header, notes=notes), tuple(unset), tuple(invented)
    )


def _without_literal_secrets(
    mapped: LiteLLMDocument,
) -> tuple[dict[str, Any], dict[tuple[int, int], list[str]], list[str]]:
    """The document with literal keys and header values swapped for invented variable names.

    The names come from the model and provider names alone, so the same file
    always gives the same names, whatever the environment holds. One value
    used by several deployments is one variable, named at its first use
    (values are told apart by a digest, never kept or shown).
    """
    taken = set(_env_names(mapped.document))
    invented: list[str] = []
    by_value: dict[tuple[str, bytes], str] = {}

    def invent(what: str, value: str, *parts: str) -> str:
        digest = (what, hashlib.sha256(value.encode()).digest())
        if digest in by_value:
            return by_value[digest]
        base = "_".join(_env_token(p) for p in parts if _env_token(p))
        base = base if base and not base[0].isdigit() else f"KEY_{base}"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        invented.append(name)
        by_value[digest] = name
        return name

    notes: dict[tuple[int, int], list[str]] = {}
    models = []
    for i, model in enumerate(mapped.document.get("models", [])):
        providers = []
        for j, entry in enumerate(model["providers"]):
            provider = dict(entry)
            origin = mapped.origins[(i, j)]
            note = notes.setdefault((i, j), [f"from model_list[{origin.index}]"])
            if provider.get("type") == "unsupported":
                note.append("router-health cannot check this deployment: it reports it unsupported")
            if provider.get("probe") == "completion":
                note += [
                    f"type {provider['type']!r} has no free models list: checked by a 1-token call",
                    "(billed), as LiteLLM checks it",
                ]
            if "api_key" in provider:
                name = invent(
                    "api_key", provider["api_key"], model["name"], provider["name"], "API_KEY"
                )
                provider = {
                    ("api_key_env" if k == "api_key" else k): (name if k == "api_key" else v)
                    for k, v in provider.items()
                }
                note += [
                    "litellm_params.api_key is written in the LiteLLM file: not copied here;",
                    f"export {name}=<that key> before serving",
                ]
            literal_headers = provider.pop("headers", None) or {}
            if literal_headers:
                from_env = dict(provider.get("headers_env") or {})
                for header, value in literal_headers.items():
                    from_env[header] = invent(
                        f"header {header.lower()}", value, model["name"], provider["name"], header
                    )
                provider["headers_env"] = from_env
                note.append("header values are written in the LiteLLM file: not copied here;")
                note += [f"export {from_env[h]}=<the {h} value> before serving" for h in literal_headers]
            providers.append(provider)
        models.append({**model, "providers": providers})
    return {**mapped.document, "models": models}, notes, invented


def _env_names(document: Mapping[str, Any]) -> list[str]:
    """Every environment variable the document's providers read, in order, once each."""
    names: dict[str, None] = {}
    for model in document.get("models", []):
        for provider in model["providers"]:
            for key in _ENV_KEYS:
                if isinstance(provider.get(key), str):
                    names[provider[key]] = None
            for name in (provider.get("headers_env") or {}).values():
                if isinstance(name, str):
                    names[name] = None
    return list(names)


def _env_token(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()
