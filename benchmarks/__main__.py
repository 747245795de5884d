"""``python -m benchmarks [--quick] [--json FILE]``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from importlib.metadata import version

from . import acceptance


def machine() -> str:
    packages = ", ".join(f"{p} {version(p)}" for p in ("trio", "httpx", "hypercorn", "quart-trio"))
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {packages}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # per-probe INFO lines would cost CPU here

    rows = acceptance.run(quick=args.quick)
    print(f"Machine: {machine()}\n")
    print("## Core checker acceptance (issue 2)\n")
    print(acceptance.markdown(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine(), "acceptance": rows}, handle, indent=2)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
