"""Routers talking to router-health over HTTP, from inside the router's own process.

A floor of its own that imports only ``service.config`` (the provider names must be
the ones router-health gives the same deployments), never the engine, the live state
or the web stack: a router embeds this with none of them.

* :mod:`.client`: a background client for ``GET /v1/route/{model}`` (cached, with
  ETags) and ``POST /v1/health/observations`` (batched, bounded); router-agnostic.
* :mod:`.litellm`: the LiteLLM plugin (``pip install 'router-health[litellm]'``),
  documented in docs/litellm.md, "Feeding LiteLLM back".
"""
