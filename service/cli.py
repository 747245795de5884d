"""``router-health``: serve, demo, check and import.

Exit codes of ``check`` (for cron, CI and Kubernetes exec probes): 0 healthy,
1 degraded, 2 unhealthy, 3 bad usage or config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from importlib import metadata
from typing import NoReturn

import trio

from .config import (
    Config,
    ConfigError,
    import_litellm,
    is_litellm_path,
    load_config,
    load_litellm_config,
)
from .config.litellm_yaml import read_config_file
from .engine.cost import ProbeCosts
from .engine.manager import AdapterManager, UnknownModelError, raise_open_file_limit
from .engine.report import HealthReport, HealthStatus, ProbeResult
from .live.storage_schema import StorageError, check_version
from .logs import LOG_FORMATS, configure_logging

__all__ = ["main"]

EXIT_CODES = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}
EXIT_USAGE = 3
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on bad usage, which `check` uses for "unhealthy".
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="router-health",
        description="Concurrent, deadline-bounded health checks for AI router adapters.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO for serve/demo, WARNING for check",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text: the human lines (default); json: one JSON object per line",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_config(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument(
            "--config",
            default=os.environ.get("ROUTER_HEALTH_CONFIG"),
            required=required and not os.environ.get("ROUTER_HEALTH_CONFIG"),
            help="TOML config file, or a LiteLLM proxy config (.yaml/.yml) "
            "(or set ROUTER_HEALTH_CONFIG)",
        )
        p.add_argument("--strict", action="store_true", help=STRICT_HELP)

    serve = sub.add_parser("serve", help="serve the health API over HTTP")
    add_config(serve, required=True)
    serve.add_argument("--host", default=None, help="default: [server].host or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: [server].port or 8000")

    demo = sub.add_parser(
        "demo", help="serve the health API against built-in simulated providers (offline)"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--background", type=float, default=0.0, metavar="SECONDS",
        help="check in the background every SECONDS, with history, uptime and /status "
        "(kept in router-health/demo.db under $XDG_STATE_HOME); default: live checks only",
    )

    check = sub.add_parser(
        "check",
        help="check once, print a table, exit 0 healthy / 1 degraded / 2 unhealthy",
    )
    add_config(check, required=False)
    check.add_argument("--model", help="check only this model")
    check.add_argument("--sequential", action="store_true", help="one adapter at a time")
    check.add_argument("--timeout", type=float, default=None, help="seconds for the whole run")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    imports = sub.add_parser(
        "import", help="print another tool's config as router-health TOML (stdout)"
    )
    imports.add_argument("format", choices=["litellm"], help="litellm: a LiteLLM proxy config.yaml")
    imports.add_argument("path", help="the file to import")
    imports.add_argument("--strict", action="store_true", help=STRICT_HELP)
    return parser


def package_version() -> str:
    """The installed distribution's version ("unknown" in a checkout that was never installed)."""
    try:
        return metadata.version("router-health")
    except metadata.PackageNotFoundError:
        return "unknown"


STRICT_HELP = (
    "refuse a deployment router-health cannot check (a config error) "
    "instead of reporting it unsupported"
)


# -- config ---------------------------------------------------------------------


def load(path: str, *, strict: bool = False) -> Config:
    """``--config path``: a LiteLLM proxy config when named .yaml/.yml, else TOML."""
    if is_litellm_path(path):
        return load_litellm_config(path, strict=strict)
    config = load_config(path)
    if strict:
        unsupported = [
            f"{model.name} / {provider.name}"
            for model in config.models
            for provider in model.providers
            if provider.type == "unsupported"
        ]
        if unsupported:
            raise ConfigError(
                config.source,
                [f"type \"unsupported\" entries refused by --strict: {', '.join(unsupported)}"],
            )
    return config


def _import(args: argparse.Namespace) -> int:
    imported = import_litellm(read_config_file(args.path), source=args.path, strict=args.strict)
    sys.stdout.write(imported.toml)
    if imported.unset:
        print(
            "router-health: before serving it, export: " + ", ".join(imported.unset),
            file=sys.stderr,
        )
    return 0


# -- check --------------------------------------------------------------------


def format_table(results: Sequence[ProbeResult]) -> str:
    """A plain aligned table: readable in a terminal, a CI log or an email."""
    header = ("MODEL", "PROVIDER", "STATUS", "LATENCY", "ERROR")
    rows = [
        (
            r.model,
            r.provider,
            r.status.value + (" (fallback)" if r.fallback else ""),
            "-" if r.latency_ms is None else f"{r.latency_ms:.0f} ms",
            r.error or "",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:4])]
        return "  ".join([*cells, row[4]]).rstrip()

    return "\n".join(line(row) for row in [header, *rows])


def _summary(report: HealthReport) -> str:
    results = report.results()
    healthy = sum(r.healthy for r in results)
    strategy = "concurrent" if report.concurrent else "sequential"
    unchecked = report.unchecked_models
    models = f"{report.healthy_models}/{report.total_models - unchecked} models healthy"
    if unchecked:
        models += f" ({unchecked} more not checked: unsupported)"
    return (
        f"status: {report.status.value} — {models}, {healthy}/{len(results)} adapters healthy, "
        f"{report.execution_time:.2f} s ({strategy}{', with fallback' if report.fallback else ''})"
    )


def cost_summary(costs: ProbeCosts) -> str:
    """What this check's probes cost, on one line (the budget named when it bit)."""
    total = costs.total()
    line = (
        f"probes: {total.probes} sent ({total.free_probes} free, {total.paid_probes} paid), "
        f"{total.tokens} tokens billed"
    )
    if total.budget_fallbacks:
        plural = "s" if total.budget_fallbacks > 1 else ""
        line += (
            f"; {total.budget_fallbacks} paid probe{plural} sent as a free one "
            f"(max_probe_tokens_per_hour = {costs.max_tokens_per_hour} reached)"
        )
    return line


def _fleet_size(config: Config) -> int:
    return sum(len(model.providers) for model in config.models)


async def _check(config: Config, args: argparse.Namespace) -> int:
    raise_open_file_limit(_fleet_size(config))
    manager = AdapterManager.from_config(config)
    async with manager:
        names = [args.model] if args.model else manager.get_available_models()
        if args.model:
            manager.get_model_adapters(args.model)  # UnknownModelError lists the options
        report = await manager.health_checker.check_all_models_with_timeout(
            model_names=names,
            model_adapters=manager.model_adapters,
            timeout=args.timeout,
            use_concurrent=not args.sequential and config.checks.use_concurrent,
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_table(report.results()))
        print()
        print(_summary(report))
        print(cost_summary(manager.health_checker.cost))
    return EXIT_CODES[report.status]


async def _check_demo(args: argparse.Namespace) -> int:
    from .testing.demo import demo_config, start_demo_upstream

    async with trio.open_nursery() as nursery:
        simulator = await start_demo_upstream(nursery)
        code = await _check(demo_config(simulator), args)
        nursery.cancel_scope.cancel()
    return code


# -- serve / demo -------------------------------------------------------------


async def _wait_for_signal(event: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logging.getLogger("router_health").info(
                "Received %s: shutting down gracefully", signal.Signals(signum).name
            )
            event.set()
            return


async def _serve(config: Config, host: str, port: int, *, announce: str = "") -> None:
    from .api.app import create_app, serve

    raise_open_file_limit(_fleet_size(config))
    app = create_app(config)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_for_signal, stop)
        urls = await nursery.start(
            partial(serve, app, host=host, port=port, shutdown_trigger=stop.wait)
        )
        base = urls[0] if urls else f"http://{host}:{port}"
        if announce:
            # A wildcard address (the container image's demo) is not where a browser goes.
            shown = base.replace("//0.0.0.0:", "//localhost:").replace("//[::]:", "//localhost:")
            print(announce.format(base=shown), flush=True)
        else:
            print(f"router-health serving on {base}", flush=True)
        # hypercorn drains in-flight requests once `stop` is set; the
        # nursery then waits for serve() to return.


DEMO_BANNER = """\
router-health demo: simulated providers on {upstream}, health API on {{base}}

Open {{base}}/ in a browser for the dashboard, or try:
  curl -s {{base}}/v1/health/ | python3 -m json.tool
  curl -s '{{base}}/v1/health/?use_concurrent=false' | python3 -m json.tool
  curl -s {{base}}/v1/health/models/gpt-4 | python3 -m json.tool
  curl -s {{base}}/v1/health/models
  curl -s {{base}}/v1/health/performance | python3 -m json.tool
  curl -sN {{base}}/v1/health/stream     # live events; run a check in another shell
  curl -s -H 'Accept: application/health+json' {{base}}/v1/health/
  curl -s {{base}}/metrics | grep router_health_adapter_up
  curl -s {{base}}/livez ; curl -s {{base}}/readyz

Ctrl-C stops it."""


DEMO_HISTORY = """

With --background, history too (kept across demo restarts):
  open {base}/status                  # the public status page
  curl -s '{base}/v1/health/uptime?window=1h' | python3 -m json.tool
  curl -s {base}/v1/health/incidents | python3 -m json.tool"""


async def _demo(args: argparse.Namespace) -> None:
    from .testing.demo import demo_config, start_demo_upstream

    async with trio.open_nursery() as nursery:
        simulator = await start_demo_upstream(nursery)
        banner = DEMO_BANNER.format(upstream=simulator.root_url)
        if args.background > 0:
            banner = banner.replace("\n\nCtrl-C", DEMO_HISTORY + "\n\nCtrl-C")
        config = demo_config(simulator, background=args.background)
        await _serve(config, args.host, args.port, announce=banner)
        nursery.cancel_scope.cancel()


# -- entry point ----------------------------------------------------------------


def _leaf(exc: BaseException) -> BaseException:
    """Trio raises errors from nurseries as groups; a lone error reads better bare."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup) and exc.subgroup(KeyboardInterrupt) is not None:
        return KeyboardInterrupt()
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BaseException as exc:
        code = _report(_leaf(exc))
        if code is None:
            raise
        return code


def _report(exc: BaseException) -> int | None:
    """Print what went wrong in one line and pick the exit code; None: not ours to explain."""
    if isinstance(exc, KeyboardInterrupt):
        print("router-health: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(exc, ConfigError):
        print(f"router-health: invalid config\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, StorageError):  # a database this version must not write to
        print(f"router-health: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, UnknownModelError | ValueError):
        print(f"router-health: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, OSError):  # e.g. the port is taken: hypercorn's bind error says which
        print(f"router-health: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return None


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(
        args.log_level or ("WARNING" if args.command == "check" else "INFO"), args.log_format
    )
    if args.command == "demo":
        trio.run(_demo, args)
        return 0
    if args.command == "import":
        return _import(args)
    if args.command == "check":
        if args.config is None:
            return trio.run(_check_demo, args)
        return trio.run(_check, load(args.config, strict=args.strict), args)
    config = load(args.config, strict=args.strict)
    if config.storage.active(config.checks.background_enabled):
        check_version(config.storage.path)  # refused in one line, before serving
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    trio.run(_serve, config, host, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
