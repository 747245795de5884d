"""``python -m service.testing.simulator``: serve simulated upstreams from the command line."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import trio

from .behavior import KINDS, SimProvider
from .fleets import demo_providers, fleet_providers, load_spec
from .server import Simulator


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.testing.simulator",
        description="Serve simulated AI-provider upstreams; prints 'SIMULATOR <url>' once bound.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="serve demo_providers()")
    source.add_argument("--spec", metavar="FILE.json", help="JSON list of SimProvider objects")
    parser.add_argument("--fleet", type=int, default=0, metavar="N", help="add bench-0..bench-N-1")
    parser.add_argument("--fleet-latency", type=float, default=0.5)
    parser.add_argument("--fleet-kind", choices=KINDS, default="openai")
    return parser


def _raise_fd_limit() -> None:
    """Let a benchmark hold thousands of sockets: lift the soft fd limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


async def _run_cli(sim: Simulator) -> None:
    # The signal receiver is open before the URL is printed, so a SIGINT sent
    # as soon as the line is read is already caught (no KeyboardInterrupt).
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(sim.serve)
            print(f"SIMULATOR {url}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        providers: list[SimProvider] = []
        if args.spec:
            providers = load_spec(args.spec)
        elif args.demo or not args.fleet:
            providers = demo_providers()
        if args.fleet:
            providers += fleet_providers(
                args.fleet, latency=args.fleet_latency, kind=args.fleet_kind
            )
        sim = Simulator(providers, host=args.host, port=args.port, seed=args.seed)
    except (OSError, ValueError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    try:
        trio.run(_run_cli, sim)
    except KeyboardInterrupt:  # a SIGINT before the receiver was installed
        pass
    except OSError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    return 0
