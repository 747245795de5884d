"""Google Vertex AI as the simulator plays it: an OAuth token endpoint, then the model API.

A service account's credentials JSON (:func:`service_account_info`) points its
``token_uri`` at ``/{name}/token``. That endpoint checks the JWT assertion
google-auth sends, signature included, against the simulated account's
public key, and hands out an access token: the provider's ``api_key`` (any
token when it has none). The model API then wants ``Authorization: Bearer``
with that token, as Vertex does:

- ``GET /v1/publishers/{publisher}/models/{model}``: the model's metadata (free);
- ``POST /v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:generateContent``
  (Gemini), ``:predict`` (embedding models) and ``:rawPredict`` (Anthropic's
  Messages API on Vertex): billed calls.

The ``api_key`` is also accepted as an express mode API key (``x-goog-api-key``,
the model calls then with or without the project in the path).

Errors are Google's ``{"error": {"code", "message", "status"}}``; the token
endpoint answers OAuth's ``{"error", "error_description"}``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request
from .gemini import GoogleErrors
from .wire import Match, Refused, retry_after_header, usage_reply

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "SIM_SERVICE_ACCOUNT",
    "VertexWire",
    "service_account_info",
    "sim_private_key_pem",
]

#: The one service account the simulated project has.
SIM_SERVICE_ACCOUNT: Final = "router-health-sim@rh-sim.iam.gserviceaccount.com"
SIM_PROJECT: Final = "rh-sim"
_JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Google refuses assertions meant to live longer than an hour.
_MAX_ASSERTION_LIFETIME: Final = 3600
_CLOCK_SKEW: Final = 300
_TOKEN_LIFETIME: Final = 3599
#: The audiences Google's token endpoint accepts in an assertion.
_AUDIENCES: Final = frozenset(
    {"https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token"}
)
_UNAUTHENTICATED: Final = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
#: Model calls by the action after the model's ":" and the mode each one runs.
_ACTIONS: Final = {"generateContent": "chat", "rawPredict": "chat", "predict": "embedding"}


@functools.cache
def _private_key() -> RSAPrivateKey:
    """The simulated account's RSA key: made once per process, so no key is ever committed."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sim_private_key_pem() -> str:
    """The simulated service account's private key, PEM (PKCS#8), as a credentials JSON holds it."""
    from cryptography.hazmat.primitives import serialization

    return (
        _private_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def service_account_info(
    token_uri: str, *, private_key_pem: str | None = None, client_email: str = SIM_SERVICE_ACCOUNT
) -> dict[str, str]:
    """A service-account credentials JSON whose tokens come from the simulator's ``token_uri``.

    ``private_key_pem`` other than the account's own makes an impostor: the
    token endpoint refuses its assertions (``invalid_grant``).
    """
    return {
        "type": "service_account",
        "project_id": SIM_PROJECT,
        "private_key_id": "rhtestkey-sim-0001",
        "private_key": private_key_pem or sim_private_key_pem(),
        "client_email": client_email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _publisher_model(entry: str) -> tuple[str, str]:
    """A provider's model entry as (publisher, id): "anthropic/claude-..." or a bare Google id."""
    publisher, _, model = entry.rpartition("/")
    if publisher:
        return publisher, model
    return ("anthropic" if model.startswith("claude-") else "google"), model


class VertexWire(GoogleErrors):
    """Vertex AI's v1 REST API, with its OAuth token endpoint."""

    # -- routing ---------------------------------------------------------------------

    def match(self, rest: str) -> Match | None:
        if rest == "/token":
            return Match("POST", "token", public=True)
        parts = rest.split("/")
        # /v1/publishers/{publisher}/models/{model}: the metadata, or (express
        # mode, with an API key) /v1/publishers/{publisher}/models/{model}:{action}
        if len(parts) == 6 and parts[1:3] == ["v1", "publishers"] and parts[4] == "models":
            if not (parts[3] and parts[5]):
                return None
            if ":" not in parts[5]:
                return Match.free("get", f"{parts[3]}/{parts[5]}")
            model, _, action = parts[5].rpartition(":")
            op = _ACTIONS.get(action)
            return Match.model_call(op, f"{parts[3]}/{parts[5]}") if model and op else None
        # /v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{action}
        if (
            len(parts) == 10
            and parts[1:3] == ["v1", "projects"]
            and parts[4] == "locations"
            and parts[6] == "publishers"
            and parts[8] == "models"
            and all(parts[3:10])
        ):
            model, _, action = parts[9].rpartition(":")
            op = _ACTIONS.get(action)
            if model and op:
                return Match.model_call(op, f"{parts[7]}/{model}:{action}")
        return None

    def sent_key(self, req: _Request) -> str | None:
        # An express mode API key, else the OAuth access token.
        return req.headers.get("x-goog-api-key") or super().sent_key(req)

    def read_body(self, match: Match, req: _Request) -> Any:
        if match.op != "token":
            return super().read_body(match, req)
        return dict(parse_qsl(req.body.decode("utf-8", "replace")))

    def max_tokens(self, op: str, data: Any) -> int:
        if not isinstance(data, dict):
            return 0
        config = data.get("generationConfig")
        value = (
            config.get("maxOutputTokens") if isinstance(config, dict) else data.get("max_tokens")
        )
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    # -- answers -----------------------------------------------------------------------

    def _entry(self, provider: SimProvider, publisher: str, model: str) -> str | None:
        """The provider's entry for ``publisher``'s ``model`` (a "@version" suffix ignored)."""
        wanted = (publisher, model.partition("@")[0])
        for entry in provider.models:
            entry_publisher, entry_model = _publisher_model(entry)
            if (entry_publisher, entry_model.partition("@")[0]) == wanted:
                return entry
        return None

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        if match.op == "token":
            # Google's OAuth server is not the model API that the failure modes
            # play: its answer, good or bad, goes out as it is (a Refused reply
            # skips the modes, the error rate and the concurrency limit).
            raise Refused(self._token(provider, data))
        assert match.path_model is not None
        publisher, _, model = match.path_model.partition("/")
        model, _, action = model.partition(":")
        entry = self._entry(provider, publisher, model)
        if entry is None:
            raise Refused(self._model_missing(publisher, model))
        if match.op == "get":
            return _json_reply(
                200,
                {
                    "name": f"publishers/{publisher}/models/{model.partition('@')[0]}",
                    "versionId": model.partition("@")[2] or "001",
                    "openSourceCategory": "PROPRIETARY",
                    "launchStage": "GA",
                    "versionState": "VERSION_STATE_STABLE",
                },
            )
        mode = provider.mode_of(entry)
        if mode != match.op:
            raise Refused(self.wrong_mode(model, mode, match.op))
        if action == "rawPredict":
            return self._raw_predict(publisher, model, data)
        if action == "predict":
            return self._predict(data)
        return self._generate(data)

    def _generate(self, data: Any) -> _Reply:
        contents = data.get("contents") if isinstance(data, dict) else None
        if not isinstance(contents, list) or not contents:
            raise self.bad_request(
                "Unable to submit request because it has an empty contents field."
            )
        return usage_reply(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": "p"}]},
                        "finishReason": "MAX_TOKENS",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 1,
                    "candidatesTokenCount": 1,
                    "totalTokenCount": 2,
                },
                "modelVersion": "sim",
            },
            billed_tokens=2,
        )

    def _predict(self, data: Any) -> _Reply:
        instances = data.get("instances") if isinstance(data, dict) else None
        if not isinstance(instances, list) or not instances:
            raise self.bad_request("Invalid JSON payload: 'instances' must be a non-empty list.")
        predictions = [
            {
                "embeddings": {
                    "values": [0.0, 0.5, -0.5],
                    "statistics": {"token_count": 1, "truncated": False},
                }
            }
            for _ in instances
        ]
        return usage_reply(
            {"predictions": predictions, "metadata": {"billableCharacterCount": 4}},
            billed_tokens=len(instances),
        )

    def _raw_predict(self, publisher: str, model: str, data: Any) -> _Reply:
        if publisher != "anthropic":
            raise self.bad_request(f"rawPredict is not simulated for publisher {publisher!r}.")
        if not isinstance(data, dict) or not isinstance(data.get("anthropic_version"), str):
            raise self.bad_request("anthropic_version: Field required")
        if not isinstance(data.get("max_tokens"), int) or not data.get("messages"):
            raise self.bad_request("max_tokens: Field required")
        return usage_reply(
            {
                "id": "msg_vrtx_sim",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "p"}],
                "stop_reason": "max_tokens",
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
            billed_tokens=2,
        )

    # -- the token endpoint ------------------------------------------------------------

    def _token(self, provider: SimProvider, form: Any) -> _Reply:
        """OAuth 2.0's JWT bearer grant, checked as Google's token endpoint checks it."""
        if not isinstance(form, dict) or form.get("grant_type") != _JWT_GRANT:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type: ")
        problem = _assertion_problem(str(form.get("assertion", "")), provider.name)
        if problem is not None:
            return _oauth_error("invalid_grant", problem)
        token = provider.api_key or f"ya29.sim-token-{provider.name}"
        return _json_reply(
            200, {"access_token": token, "expires_in": _TOKEN_LIFETIME, "token_type": "Bearer"}
        )

    # -- errors ------------------------------------------------------------------------

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(404, f"The requested URL {path} was not found on this server.")

    def _model_missing(self, publisher: str, model: str) -> _Reply:
        return self.error_reply(
            404,
            f"Publisher Model `publishers/{publisher}/models/{model}` was not found or your "
            "project does not have access to it.",
        )

    def model_not_found(self, model: str) -> _Reply:
        publisher, model = _publisher_model(model)
        return self._model_missing(publisher, model)

    def wrong_mode(self, model: str, mode: str, op: str) -> _Reply:
        return self.error_reply(400, f"The model {model} does not support this method ({op}).")

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        message = _UNAUTHENTICATED
        if echo_key is not None:  # Google never quotes a token; a test of our redaction does
            message = f"Invalid OAuth 2 access token {echo_key}. {_UNAUTHENTICATED}"
        return self.error_reply(401, message, err_type="UNAUTHENTICATED")

    def rate_limited(self, retry_after: float) -> _Reply:
        return self.error_reply(
            429,
            "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute"
            "_per_project_per_base_model (simulated). Please submit a quota increase request.",
            err_type="RESOURCE_EXHAUSTED",
            headers=retry_after_header(retry_after),
        )


def _oauth_error(error: str, description: str) -> _Reply:
    return _json_reply(400, {"error": error, "error_description": description})


def _assertion_problem(assertion: str, name: str) -> str | None:
    """Why Google would refuse this JWT assertion (RS256, our account, fresh), or None."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    pieces = assertion.split(".")
    if len(pieces) != 3:
        return "Invalid JWT: malformed assertion."
    try:
        header = json.loads(_b64url(pieces[0]))
        claims = json.loads(_b64url(pieces[1]))
        signature = _b64url(pieces[2])
    except (ValueError, binascii.Error):
        return "Invalid JWT: malformed assertion."
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        return "Invalid JWT: only RS256 assertions are accepted."
    if claims.get("iss") != SIM_SERVICE_ACCOUNT:
        return "Invalid grant: account not found"
    try:
        _private_key().public_key().verify(
            signature,
            f"{pieces[0]}.{pieces[1]}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, UnicodeEncodeError):
        return "Invalid JWT Signature."
    issued, expires = claims.get("iat"), claims.get("exp")
    now = time.time()
    if (
        not isinstance(issued, int | float)
        or not isinstance(expires, int | float)
        or issued > now + _CLOCK_SKEW
        or expires < now - _CLOCK_SKEW
        or expires - issued > _MAX_ASSERTION_LIFETIME
    ):
        return (
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
            "timeframe. Check your iat and exp values in the JWT claim."
        )
    audience = claims.get("aud")
    # google-auth writes Google's own token URI here, whatever token_uri says.
    if audience not in _AUDIENCES and not (
        isinstance(audience, str) and audience.endswith(f"/{name}/token")
    ):
        return "Invalid JWT: the audience is not this token endpoint."
    if not claims.get("scope"):
        return "Invalid OAuth scope or ID token audience provided."
    return None
