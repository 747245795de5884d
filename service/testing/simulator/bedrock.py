"""AWS Bedrock as the simulator plays it: SigV4 checked like AWS checks it, real shapes.

The control plane (ListFoundationModels, GetFoundationModel, GetInferenceProfile)
and the runtime (Converse, InvokeModel for embedding models) share one base
URL here, as they do behind a gateway. A provider with an ``api_key`` is an
AWS account with one access key: :data:`SIM_ACCESS_KEY_ID`, whose secret is
that ``api_key`` (which also works as a Bedrock API key, sent as a Bearer token). Each request's signature is recomputed with botocore's
signer and compared, so a wrong secret is a 403 ``InvalidSignatureException``
and another key id a 403 ``UnrecognizedClientException``, as on AWS.
Errors are AWS's rest-json documents: ``{"message"}`` with the error code in
the ``x-amzn-ErrorType`` header, which boto3 turns into its ``ClientError``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from .behavior import SimProvider
from .connection import _json_reply, _Reply, _Request
from .wire import Match, Refused, Wire, format_seconds, retry_after_header, usage_reply

__all__ = ["SIM_ACCESS_KEY_ID", "SIM_ACCOUNT", "BedrockWire"]

#: The one access key id the simulated account has; its secret is the provider's ``api_key``.
SIM_ACCESS_KEY_ID: Final = "AKIASIMULATEDBEDROCK"
#: The simulated account's id, in the ARNs it answers with.
SIM_ACCOUNT: Final = "123456789012"
_REGION_IN_ARNS: Final = "us-east-1"
_SERVICE: Final = "bedrock"
#: How far the request's X-Amz-Date may be from our clock (AWS allows 5 minutes).
_MAX_SKEW: Final = timedelta(minutes=5)
_ERROR_NAMESPACE: Final = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_ERROR_TYPES: Final = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    405: "UnknownOperationException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
}
_PROFILE_GEOGRAPHIES: Final = frozenset({"us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"})
_AUTHORIZATION: Final = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})"
)
#: Path labels as botocore encodes them (``percent_encode``); see _canonical_paths.
_LABEL_SAFE: Final = "-_.~"
#: What a client that sends the path unencoded (our transport) leaves as it is.
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"
_INVALID_MODEL: Final = "The provided model identifier is invalid."
_BAD_SIGNATURE: Final = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation "
    "for details."
)


def _is_profile(model: str) -> bool:
    geography, _, rest = model.partition(".")
    return geography in _PROFILE_GEOGRAPHIES and "." in rest


def _bare_id(model: str) -> str:
    """An ARN's resource id ("arn:...:foundation-model/x" -> "x"); an id as it is."""
    return model.rsplit("/", 1)[-1] if model.startswith("arn:") else model


def _model_arn(model: str) -> str:
    return f"arn:aws:bedrock:{_REGION_IN_ARNS}::foundation-model/{model}"


def _model_summary(model: str, mode: str) -> dict[str, Any]:
    provider_name = model.partition(".")[0].capitalize()
    return {
        "modelArn": _model_arn(model),
        "modelId": model,
        "modelName": model.partition(".")[2] or model,
        "providerName": provider_name,
        "inputModalities": ["TEXT"],
        "outputModalities": ["EMBEDDING" if mode == "embedding" else "TEXT"],
        "responseStreamingSupported": mode != "embedding",
        "customizationsSupported": [],
        "inferenceTypesSupported": ["ON_DEMAND"],
        "modelLifecycle": {"status": "ACTIVE"},
    }


class BedrockWire(Wire):
    """The bedrock and bedrock-runtime REST APIs under one base URL."""

    # -- routing ---------------------------------------------------------------------

    def match(self, rest: str) -> Match | None:
        if rest == "/foundation-models":
            return Match.free("list")
        if rest.startswith("/foundation-models/") and len(rest) > 19:
            return Match.free("get", rest[19:])
        if rest.startswith("/inference-profiles/") and len(rest) > 20:
            return Match.free("profile", rest[20:])
        if rest.startswith("/model/"):
            model, _, action = rest[7:].rpartition("/")
            if model and action == "converse":
                return Match.model_call("chat", model)
            if model and action == "invoke":  # simulated for embedding models
                return Match.model_call("embedding", model)
        return None

    # -- SigV4 -------------------------------------------------------------------------

    def sent_key(self, req: _Request) -> str | None:
        # A Bedrock API key travels as a Bearer token. With SigV4 the secret
        # key never travels; the session token is the secret that does.
        auth = req.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return req.headers.get("x-amz-security-token")

    def check_auth(self, provider: SimProvider, req: _Request) -> _Reply | None:
        if provider.api_key is None:
            return None
        auth = req.headers.get("authorization")
        if auth is None:
            return self.error_reply(
                403, "Missing Authentication Token", err_type="MissingAuthenticationTokenException"
            )
        if auth[:7].lower() == "bearer ":  # a Bedrock API key: the account's api_key here too
            if hmac.compare_digest(auth[7:].strip().encode(), provider.api_key.encode()):
                return None
            return self.error_reply(
                403,
                "Authentication failed: Please make sure your API Key is valid.",
                err_type="UnrecognizedClientException",
            )
        found = _AUTHORIZATION.fullmatch(auth.strip())
        scope = found.group("credential").split("/") if found else []
        if found is None or len(scope) != 5 or scope[4] != "aws4_request":
            return self.error_reply(
                400,
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                "parameters.",
                err_type="IncompleteSignatureException",
            )
        access_key, date, region, service, _ = scope
        if access_key != SIM_ACCESS_KEY_ID:
            return self.error_reply(
                403,
                "The security token included in the request is invalid.",
                err_type="UnrecognizedClientException",
            )
        if service != _SERVICE:
            return self._bad_signature(
                f"Credential should be scoped to correct service: '{_SERVICE}'."
            )
        stamp = req.headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._bad_signature(
                "Authorization header requires existence of an X-Amz-Date header."
            )
        if date != stamp[:8]:
            return self._bad_signature(
                "Credential should be scoped to a valid date of the request."
            )
        now = datetime.now(UTC)
        if abs(now - signed_at) > _MAX_SKEW:
            return self._bad_signature(
                f"Signature expired: {stamp} is now earlier than "
                f"{(now - _MAX_SKEW).strftime('%Y%m%dT%H%M%SZ')} "
                f"({now.strftime('%Y%m%dT%H%M%SZ')} - 5 min.)"
            )
        signed = found.group("signed").split(";")
        if "host" not in signed:
            return self._bad_signature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
        if "x-amz-security-token" in req.headers and "x-amz-security-token" not in signed:
            return self._bad_signature("'X-Amz-Security-Token' must be a signed header.")
        if any(name not in req.headers for name in signed):
            return self._bad_signature(_BAD_SIGNATURE)
        declared_hash = req.headers.get("x-amz-content-sha256")
        if declared_hash is not None and declared_hash != hashlib.sha256(req.body).hexdigest():
            return self._bad_signature(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        expected = _signatures(provider.api_key, region, stamp, signed, req)
        if not any(hmac.compare_digest(e, found.group("signature")) for e in expected):
            return self._bad_signature(_BAD_SIGNATURE)
        return None

    def _bad_signature(self, message: str) -> _Reply:
        return self.error_reply(403, message, err_type="InvalidSignatureException")

    # -- answers -----------------------------------------------------------------------

    def max_tokens(self, op: str, data: Any) -> int:
        config = data.get("inferenceConfig") if isinstance(data, dict) else None
        value = config.get("maxTokens") if isinstance(config, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    def serves(self, provider: SimProvider, model: str) -> bool:
        return _bare_id(model) in provider.models

    def answer(self, provider: SimProvider, match: Match, data: Any, req: _Request) -> _Reply:
        foundation = [m for m in provider.models if not _is_profile(m)]
        if match.op == "list":
            return _json_reply(
                200,
                {"modelSummaries": [_model_summary(m, provider.mode_of(m)) for m in foundation]},
            )
        model = match.path_model
        assert model is not None
        if match.op == "get":
            found = _bare_id(model)
            if found not in foundation:
                raise Refused(self.error_reply(404, f"Model {model} was not found."))
            return _json_reply(
                200, {"modelDetails": _model_summary(found, provider.mode_of(found))}
            )
        if match.op == "profile":
            profile = _bare_id(model)
            if not _is_profile(profile) or profile not in provider.models:
                raise Refused(self.error_reply(404, f"Inference profile {model} was not found."))
            return _json_reply(200, _inference_profile(profile))
        served = _bare_id(self.served_model(provider, model))
        mode = provider.mode_of(served)
        if mode != match.op:
            raise Refused(self.wrong_mode(served, mode, match.op))
        if match.op == "embedding":
            return self._embedding(data)
        return self._converse(data)

    def _converse(self, data: Any) -> _Reply:
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or not messages:
            raise self.bad_request("A conversation must start with a user message.")
        config = data.get("inferenceConfig", {})
        if not isinstance(config, dict) or (
            "maxTokens" in config and self.max_tokens("chat", data) == 0
        ):
            raise self.bad_request(
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to "
                "satisfy constraint: Member must have value greater than or equal to 1"
            )
        return usage_reply(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "p"}]}},
                "stopReason": "max_tokens",
                "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                "metrics": {"latencyMs": 10},
            },
            billed_tokens=2,
        )

    def _embedding(self, data: Any) -> _Reply:
        """InvokeModel on an embedding model: Titan's body or Cohere's."""
        if isinstance(data, dict) and isinstance(data.get("inputText"), str) and data["inputText"]:
            return usage_reply(
                {"embedding": [0.0, 0.5, -0.5], "inputTextTokenCount": 1}, billed_tokens=1
            )
        texts = data.get("texts") if isinstance(data, dict) else None
        if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
            return usage_reply(
                {
                    "id": "emb-sim",
                    "embeddings": [[0.0, 0.5, -0.5] for _ in texts],
                    "texts": texts,
                    "response_type": "embeddings_floats",
                },
                billed_tokens=len(texts),
            )
        raise self.bad_request(
            "Malformed input request: required key [inputText] not found, please reformat "
            "your input and try again."
        )

    # -- errors ------------------------------------------------------------------------

    def error_body(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
    ) -> Any:
        return {"message": message}

    def error_reply(
        self,
        status: int,
        message: str,
        *,
        err_type: str | None = None,
        code: str | int | None = None,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> _Reply:
        name = err_type or _ERROR_TYPES.get(status, "InternalServerException")
        reply = _json_reply(status, self.error_body(status, message), headers)
        # boto3 reads the error code from this header (rest-json protocol).
        reply.headers.append(("x-amzn-ErrorType", f"{name}:{_ERROR_NAMESPACE}"))
        reply.headers.append(("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000"))
        return reply

    def unparsable(self) -> _Reply:
        return self.error_reply(
            400, "Malformed input request, please reformat your input and try again."
        )

    def not_found_path(self, method: str, path: str) -> _Reply:
        return self.error_reply(
            404,
            f"Unable to determine service/operation name to be authorized ({method} {path})",
            err_type="UnknownOperationException",
        )

    def model_not_found(self, model: str) -> _Reply:
        return self.error_reply(400, _INVALID_MODEL)

    def wrong_mode(self, model: str, mode: str, op: str) -> _Reply:
        call = "Converse" if op == "chat" else "InvokeModel"
        return self.error_reply(
            400, f"This action doesn't support the model that you provided ({call})."
        )

    def auth_error(self, *, echo_key: str | None = None, missing: bool = False) -> _Reply:
        # AWS never quotes a credential back; with ``echo_key`` (a test of our
        # redaction) this one does, as a misbehaving gateway in front might.
        message = "The security token included in the request is invalid."
        if echo_key is not None:
            message = f"The security token included in the request is invalid: {echo_key}"
        return self.error_reply(401, message, err_type="UnrecognizedClientException")

    def rate_limited(self, retry_after: float) -> _Reply:
        return self.error_reply(
            429,
            f"Too many requests, please wait before trying again (retry in {format_seconds(retry_after)}s).",
            err_type="ThrottlingException",
            headers=retry_after_header(retry_after),
        )


def _inference_profile(profile: str) -> dict[str, Any]:
    model = profile.partition(".")[2]
    return {
        "inferenceProfileName": f"{profile.partition('.')[0].upper()} {model}",
        "inferenceProfileArn": (
            f"arn:aws:bedrock:{_REGION_IN_ARNS}:{SIM_ACCOUNT}:inference-profile/{profile}"
        ),
        "inferenceProfileId": profile,
        "models": [{"modelArn": _model_arn(model)}],
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
        "createdAt": "2024-08-01T00:00:00Z",
        "updatedAt": "2024-08-01T00:00:00Z",
    }


def _canonical_paths(path: str) -> list[str]:
    """The raw paths a client may have sent for the decoded ``path``.

    AWS signs the path as it was sent, and the simulator only sees it decoded.
    SDKs encode path labels with botocore's rule (":" as %3A, "/" in an ARN as
    %2F): re-encode the label that way; a client that sent the path as it is
    (":" unencoded) is the second candidate. Only one can match a signature.
    """
    candidates = [quote(path, safe=_PATH_SAFE)]
    prefix, found, rest = path.partition("/model/")
    if found:
        model, _, action = rest.rpartition("/")
        candidates.append(f"{prefix}/model/{quote(model, safe=_LABEL_SAFE)}/{action}")
    for collection in ("/foundation-models/", "/inference-profiles/"):
        prefix, found, label = path.partition(collection)
        if found and label:
            candidates.append(f"{prefix}{collection}{quote(label, safe=_LABEL_SAFE)}")
    return list(dict.fromkeys(candidates))


def _signatures(
    secret: str, region: str, stamp: str, signed: list[str], req: _Request
) -> list[str]:
    """The signature of ``req`` for each raw path it may have had, computed by botocore."""
    from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    signer = SigV4Auth(Credentials(SIM_ACCESS_KEY_ID, secret), _SERVICE, region)
    query = "&".join(
        f"{quote(k, safe=_LABEL_SAFE)}={quote(v, safe=_LABEL_SAFE)}" for k, v in req.query.items()
    )
    signatures = []
    for path in _canonical_paths(req.path):
        url = f"http://{req.headers.get('host', '')}{path}" + (f"?{query}" if query else "")
        aws_request = AWSRequest(
            method=req.method, url=url, headers={n: req.headers[n] for n in signed}, data=req.body
        )
        aws_request.context["timestamp"] = stamp
        canonical = signer.canonical_request(aws_request)
        signatures.append(
            signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        )
    return signatures
