"""Child processes of the benchmark: start (pinned to a core), wait until ready, read memory, stop by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pinning:
    enabled: bool
    note: str

    def prefix(self, core: int | None) -> list[str]:
        return ["taskset", "-c", str(core)] if self.enabled and core is not None else []


def detect_pinning() -> Pinning:
    if shutil.which("taskset") is None:
        return Pinning(False, "not pinned: taskset is not installed")
    if (os.cpu_count() or 1) < 2:
        return Pinning(False, "not pinned: fewer than 2 cores")
    probe = subprocess.run(["taskset", "-c", "1", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return Pinning(False, f"not pinned: taskset failed ({probe.stderr.strip()[:100]})")
    return Pinning(True, "pinned with taskset: upstream and load generator on core 0, process under test on core 1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(name: str, argv: list[str], logs: Path, pinning: Pinning, core: int | None, cwd: Path) -> Proc:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            pinning.prefix(core) + argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )
    return Proc(name, popen, log)


def wait_port(proc: Proc, port: int, timeout: float = 30.0) -> None:
    """Until something accepts on 127.0.0.1:port; raises if the process died or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on port {port} within {timeout:g}s:\n{proc.tail()}")


def family(pid: int) -> list[int]:
    """pid and its descendants (our proxy records in a worker process: its cost is the proxy's cost)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def status_kb(pid: int, keys: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[int, dict[str, int]]:
    """Those /proc status fields, in kB, of each live member of the process tree (pid and its descendants)."""
    found: dict[int, dict[str, int]] = {}
    for member in family(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        fields = (line.partition(":") for line in lines)
        found[member] = {key: int(value.split()[0]) for key, _, value in fields if key in keys}
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a live process and its descendants, summed, in kB; empty if it is gone.
    (A sum of peaks can overstate the peak of the sum: an upper bound.)"""
    found: dict[str, int] = {}
    for fields in status_kb(pid).values():
        for key, value in fields.items():
            found[key] = found.get(key, 0) + value
    return found


def stop(proc: Proc, timeout: float = 20.0) -> int | None:
    """SIGINT (a clean stop that flushes recordings), then SIGKILL after the timeout; only this pid."""
    if not proc.alive():
        return proc.popen.returncode
    proc.popen.send_signal(signal.SIGINT)
    try:
        return proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        return proc.popen.wait(5)
