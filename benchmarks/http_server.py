"""``python -m benchmarks.http_server CONFIG.json``: the real app on hypercorn, for the HTTP rows.

Prints ``SERVING <url>`` once bound and serves until SIGINT/SIGTERM. The
parent measures this process from outside (/proc: CPU, VmHWM, fds), so the
client's work (sending, parsing a 10,000-provider answer) is not counted.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys

import trio

from service import Config, parse_config
from service.api.app import create_app, serve


async def _main(config: Config) -> None:
    app = create_app(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(functools.partial(serve, app, host="127.0.0.1", port=0))
            print(f"SERVING {urls[0]}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)
    with open(sys.argv[1], encoding="utf-8") as handle:
        config = parse_config(json.load(handle), env={})
    trio.run(_main, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
