"""[storage] on a disk that is full or a path that cannot be written: checks go on.

Storage is on by default wherever background checks run, so a bad default
location (a read-only home in a container, a full volume) must never stop
the service. The full disk is real: a 512 KiB tmpfs mounted for the test
(root only; skipped with the reason elsewhere), filled with a file, then
freed. Waits are for conditions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.api.app import EXTENSION_KEY
from tests.support import eventually
from tests.support.served import GUARD, MODELS, running_service

ADAPTERS = sum(len(providers) for providers in MODELS.values())
#: Background checks every second: results keep arriving while the disk is full.
CHECKS = {"interval": 1, "jitter": 0}


def storage_section(path: Path) -> dict[str, object]:
    return {"storage": {"path": str(path), "flush_interval": 0.05, "max_pending": 2}}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs at ``tmp_path/disk``; unmounted after the test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """A file taking every free byte of ``folder``'s filesystem."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # big writes, then down to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_never_stops_checks_and_writing_resumes_once_there_is_room(
    small_disk: Path,
) -> None:
    database = small_disk / "health.db"
    async with running_service(checks=CHECKS, sections=storage_section(database)) as service:
        state = service.app.extensions[EXTENSION_KEY]
        await eventually(lambda: state.storage.stats()["writes"] >= ADAPTERS, within=GUARD)
        filler = fill(small_disk)
        # Rows keep arriving; the writes fail, the bounded buffer overflows and counts.
        await eventually(lambda: state.storage.stats()["status"] == "failing", within=GUARD)
        await eventually(lambda: state.storage.stats()["dropped"] > 0, within=GUARD)
        ready = (await service.client.get("/readyz"))
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready"
        assert body["storage"]["status"] == "failing"
        assert "full" in body["storage"]["last_error"]
        answer = (await service.client.get("/v1/health/"))
        assert answer.status_code == 200
        assert answer.json()["status"] == "healthy"  # checks went on

        filler.unlink()
        written = state.storage.stats()["writes"]
        await eventually(
            lambda: state.storage.stats()["status"] == "ok"
            and state.storage.stats()["writes"] > written,
            within=GUARD,
        )
        assert (await service.client.get("/readyz")).json()["storage"]["status"] == "ok"


async def test_a_path_that_cannot_be_created_leaves_the_service_checking(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database's folder would go\n", encoding="utf-8")
    async with running_service(
        checks=CHECKS, sections=storage_section(blocker / "health.db")
    ) as service:
        state = service.app.extensions[EXTENSION_KEY]
        await eventually(lambda: state.storage.stats()["status"] == "failing", within=GUARD)
        answer = await service.client.get("/v1/health/")
        assert answer.status_code == 200
        assert answer.json()["status"] == "healthy"
        ready = (await service.client.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert ready["storage"]["status"] == "failing"
        assert "not-a-folder" in ready["storage"]["last_error"]


async def test_storage_is_on_by_default_under_the_state_home(state_home: Path) -> None:
    async with running_service(checks=CHECKS) as service:
        state = service.app.extensions[EXTENSION_KEY]
        assert state.storage is not None
        await eventually(lambda: state.storage.stats()["writes"] >= ADAPTERS, within=GUARD)
    assert (state_home / "router-health" / "health.db").is_file()


async def test_enabled_false_keeps_nothing(state_home: Path) -> None:
    async with running_service(checks=CHECKS, sections={"storage": {"enabled": False}}) as service:
        state = service.app.extensions[EXTENSION_KEY]
        assert state.storage is None
        assert "storage" not in (await service.client.get("/readyz")).json()
    assert not (state_home / "router-health").exists()
