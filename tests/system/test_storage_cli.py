"""``router-health serve`` on a database a newer version wrote: one line, exit 3, nothing served."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.configs import write_toml


async def test_a_database_from_a_newer_version_is_refused_in_one_line(tmp_path: Path) -> None:
    database = tmp_path / "health.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (99)")
    config = write_toml(tmp_path, f"""
[checks]
interval = 10

[[models]]
name = "m"

[[models.providers]]
name = "local"
type = "ollama"
base_url = "http://127.0.0.1:9"

[storage]
path = "{database}"
""")
    done = await run_cli("serve", "--config", str(config), "--port", "0")
    stderr = done.stderr.decode()
    assert done.returncode == 3, stderr
    assert stderr.strip().splitlines() == [
        f"router-health: cannot start: {database}: written by a newer router-health (schema "
        "version 99; this one knows up to 1): upgrade router-health, or set [storage] path to "
        "another file"
    ]
    assert b"serving on" not in done.stdout
