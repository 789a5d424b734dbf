"""The spool that keeps frames waiting for the recording worker off the heap beyond a budget."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest

from proxy.spool import FrameSpool, SpooledFrame, frame_bytes


def frames(count: int, size: int = 100) -> list[bytes]:
    return [pickle.dumps(("batch", n, bytes([n % 256]) * size)) for n in range(count)]


def test_frames_within_the_budget_stay_in_memory_as_they_are() -> None:
    spool = FrameSpool(budget=1_000)
    first, second = frames(2)
    assert spool.keep(first) is first and spool.keep(second) is second
    assert spool.held == len(first) + len(second) and spool.spooled == 0
    spool.let_go(first)
    assert spool.held == len(second)


def test_frames_past_the_budget_go_to_the_file_and_come_back_in_order() -> None:
    made = frames(50)
    spool = FrameSpool(budget=len(made[0]) * 3)
    kept = [spool.keep(data) for data in made]
    assert all(isinstance(k, bytes) for k in kept[:3]) and all(isinstance(k, SpooledFrame) for k in kept[3:])
    assert spool.held == 3 * len(made[0]) and spool.spooled == sum(len(data) for data in made[3:])
    assert [frame_bytes(k) for k in reversed(kept)] == list(reversed(made))  # any order of reading
    for k in kept:
        spool.let_go(k)
    assert spool.held == 0
    spool.close()


def test_emptying_gives_the_disk_back_and_the_next_frames_start_over(tmp_path: Path) -> None:
    spool = FrameSpool(budget=0)
    for data in frames(20, size=10_000):
        spool.keep(data)
    assert spool._file is not None
    assert os.fstat(spool._file.fileno()).st_size > 200_000
    spool.empty()
    assert os.fstat(spool._file.fileno()).st_size == 0 and spool.spooled == 0
    again = frames(3, size=7)
    kept = [spool.keep(data) for data in again]
    assert [k.offset for k in kept if isinstance(k, SpooledFrame)] == [0, len(again[0]), 2 * len(again[0])]
    assert [frame_bytes(k) for k in kept] == again
    spool.close()


def test_the_spool_file_has_no_name_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    spool = FrameSpool(budget=0)
    kept = spool.keep(frames(1)[0])
    assert isinstance(kept, SpooledFrame)
    assert list(tmp_path.iterdir()) == [], "a killed proxy leaves no spool file behind"
    spool.close()


def test_a_spool_that_cannot_be_written_keeps_the_frames_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "no such folder"))
    spool = FrameSpool(budget=0)
    made = frames(3)
    with caplog.at_level(logging.WARNING, logger="proxy.record"):
        kept = [spool.keep(data) for data in made]
    assert kept == made and spool.held == sum(len(data) for data in made)
    assert len(caplog.records) == 1 and "keeping them in memory" in caplog.records[0].getMessage()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    spool.empty()  # nothing waits any more: the file is tried again
    assert isinstance(spool.keep(made[0]), SpooledFrame)
    spool.close()
