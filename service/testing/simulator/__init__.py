"""A simulated AI-provider upstream, served over real HTTP on a local socket.

Health checks are only worth something if they are tested against upstreams
that misbehave the way real ones do: keys get revoked, gateways answer with a
captive-portal page, a vLLM box accepts the connection and never answers, a
proxy trickles a body one byte at a time, a load balancer resets the
connection half-way. This package plays every provider kind the router knows
(OpenAI and the OpenAI-compatible providers, Azure OpenAI, Azure AI, Anthropic,
Gemini, Ollama, Cohere...) with their real wire formats, every model mode
(chat, embeddings, images, speech, transcription, rerank, moderation,
responses), and lets a test or a benchmark switch each one into a failure
*mode* at run time.

It is written on raw Trio sockets and ``h11`` rather than an ASGI framework on
purpose: the failure modes need byte-level control (trickled bodies, a TCP RST
after half a body, a 10 MB body streamed without being built), every wait must
notice the client hanging up (that is how tests prove a cancelled probe stops
its upstream request), and the per-request cost must stay low enough for a
benchmark to hold 10,000 concurrent probes against one process.

Use it in-process::

    sim = Simulator(demo_providers())
    root_url = await nursery.start(sim.serve)

or out of process (``python -m service.testing.simulator --fleet 1000``), inspecting
and steering it through the ``/_sim/*`` control routes.

The modules, from the bottom up:

- ``behavior``: the data model (kinds, modes, model modes, :class:`SimProvider`,
  :class:`Behavior`, :class:`ProviderStats`) and its validation;
- ``connection``: one client connection (h11 framing, disconnect-aware waits);
- ``wire``: what one provider API implements (routes, key, answers, errors);
  one module per API: ``openai_family`` (+ ``openai_modes``, ``openai_media``,
  ``openai_fields``, ``multipart``, ``audio``), ``anthropic``, ``gemini``,
  ``ollama``, ``cohere``...;
- ``kinds``: which wire each kind speaks (where a new kind is registered);
- ``routes``: the validation order every kind goes through;
- ``modes``: what each failure mode writes;
- ``server``: the :class:`Simulator` (state, serving, answering);
- ``control``: the ``/_sim/*`` control routes;
- ``fleets``: ready-made providers and ``--spec`` files;
- ``cli``: ``python -m service.testing.simulator``.
"""

from .behavior import KINDS, MODES, Behavior, ProviderStats, SimProvider, UnknownProviderError
from .cli import main
from .fleets import demo_providers, fleet_providers, load_spec, providers_from_spec
from .server import Simulator

__all__ = [
    "KINDS",
    "MODES",
    "Behavior",
    "ProviderStats",
    "SimProvider",
    "Simulator",
    "UnknownProviderError",
    "demo_providers",
    "fleet_providers",
    "load_spec",
    "main",
    "providers_from_spec",
]
