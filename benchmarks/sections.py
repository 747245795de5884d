"""RESULTS.md's records that commands other than the full suite write, each between its markers.

``python -m benchmarks.serving``, ``.profile`` and ``.storage`` each own one
part of benchmarks/RESULTS.md, from its ``<!-- name:begin ... -->`` marker to
its ``<!-- name:end -->``; a full run carries those parts over as they are.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def splice(document: str, part: str, begin: str, end: str) -> str:
    """``document`` with what stands between ``begin`` and ``end`` replaced by ``part``.

    ``part`` carries its own markers; without them in ``document`` yet, it is appended.
    """
    start, stop = document.find(begin), document.find(end)
    if start != -1 and stop > start:
        return document[:start] + part + document[stop + len(end) :]
    return document.rstrip("\n") + "\n\n" + part + "\n"


def write_section(part: str, begin: str, end: str, results: Path = RESULTS) -> None:
    """Splice ``part`` into ``results`` (RESULTS.md) in place."""
    results.write_text(splice(results.read_text(encoding="utf-8"), part, begin, end),
                       encoding="utf-8")
