"""The overlay file of updates and deletes: survives a restart, is seen by another proxy, can be removed to clear
it, and two processes writing at once lose nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.stored import Changes
from proxy.stored_overlay import LOCK_NAME, OVERLAY_NAME, Overlay

REPO = Path(__file__).resolve().parent.parent


def test_changes_survive_a_new_overlay_on_the_same_directory(tmp_path: Path) -> None:
    first = Overlay(tmp_path)
    assert first.changes() == Changes()
    assert first.set_metadata("chatcmpl-1", {"team": "b"})
    assert first.delete("chatcmpl-2")
    again = Overlay(tmp_path).changes()
    assert again.metadata == {"chatcmpl-1": {"team": "b"}}
    assert again.deleted == frozenset({"chatcmpl-2"})


def test_the_file_is_readable_json_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    Overlay(tmp_path).set_metadata("chatcmpl-1", {"team": "b"})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([OVERLAY_NAME, LOCK_NAME])
    data = json.loads((tmp_path / OVERLAY_NAME).read_text())
    assert data["version"] == 1
    assert data["metadata"] == {"chatcmpl-1": {"team": "b"}}
    assert data["deleted"] == []


def test_a_deleted_completion_cannot_be_deleted_again_or_updated(tmp_path: Path) -> None:
    overlay = Overlay(tmp_path)
    assert overlay.set_metadata("chatcmpl-1", {"a": "1"})
    assert overlay.delete("chatcmpl-1")
    assert not overlay.delete("chatcmpl-1")
    assert not overlay.set_metadata("chatcmpl-1", {"a": "2"})
    assert overlay.changes().metadata == {}  # a delete drops the update too


def test_a_change_made_by_another_proxy_is_seen(tmp_path: Path) -> None:
    mine, theirs = Overlay(tmp_path), Overlay(tmp_path)
    assert mine.changes() == Changes()
    theirs.delete("chatcmpl-1")
    assert mine.changes().deleted == frozenset({"chatcmpl-1"})
    theirs.set_metadata("chatcmpl-2", {"a": "b"})
    assert mine.changes().metadata == {"chatcmpl-2": {"a": "b"}}
    # mine writes on top of theirs, not over it: it reads the file afresh under the lock
    mine.set_metadata("chatcmpl-3", {"c": "d"})
    assert set(theirs.changes().metadata) == {"chatcmpl-2", "chatcmpl-3"}


def test_removing_the_file_clears_every_change(tmp_path: Path) -> None:
    overlay = Overlay(tmp_path)
    overlay.delete("chatcmpl-1")
    (tmp_path / OVERLAY_NAME).unlink()
    assert overlay.changes() == Changes()


@pytest.mark.parametrize("text", ["{not json", '{"version": 99}', "[]"])
def test_a_broken_file_is_ignored_with_a_warning(tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / OVERLAY_NAME).write_text(text)
    caplog.set_level(logging.WARNING, logger="proxy.stored")
    assert Overlay(tmp_path).changes() == Changes()
    assert any(OVERLAY_NAME in record.getMessage() for record in caplog.records)


def test_a_missing_directory_is_created_on_the_first_change(tmp_path: Path) -> None:
    overlay = Overlay(tmp_path / "not" / "yet")
    assert overlay.changes() == Changes()
    assert overlay.delete("chatcmpl-1")
    assert (tmp_path / "not" / "yet" / OVERLAY_NAME).is_file()


WRITER = """
import sys
from pathlib import Path
from proxy.stored_overlay import Overlay

overlay = Overlay(Path(sys.argv[1]))
name = sys.argv[2]
for number in range(int(sys.argv[3])):
    overlay.set_metadata(f"chatcmpl-{name}-{number}", {"by": name})
    if number % 3 == 0:
        overlay.delete(f"chatcmpl-{name}-{number}")
"""


def test_two_processes_changing_one_directory_at_once_lose_nothing(tmp_path: Path) -> None:
    count = 60
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, str(count)], env=env)
        for name in ("a", "b")
    ]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    changes = Overlay(tmp_path).changes()
    for name in ("a", "b"):
        deleted = {f"chatcmpl-{name}-{n}" for n in range(count) if n % 3 == 0}
        updated = {f"chatcmpl-{name}-{n}" for n in range(count) if n % 3 != 0}
        assert deleted <= changes.deleted
        assert updated <= set(changes.metadata)
    assert len(changes.deleted) + len(changes.metadata) == 2 * count
