"""Run the real `proxy` command in a child process (started and stopped by its own pid)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

_LISTEN = re.compile(r"listening on http://([\d.]+):(\d+)/v1")


def run_cli(args: Sequence[str], timeout: float = 60.0, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


class _Drain:
    """Reads a child's pipe in a thread, so a chatty child never blocks on a full pipe."""

    def __init__(self, stream: IO[str]) -> None:
        self.parts: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.parts.append(line)

    def text(self, timeout: float = 10.0) -> str:
        self.thread.join(timeout)
        return "".join(self.parts)


@dataclass
class ProxyProcess:
    process: subprocess.Popen[str]
    url: str
    startup_line: str
    early_output: str = ""  # what it printed before the startup line
    late_output: str = ""  # what it printed after it, once stopped
    _stdout: _Drain | None = None
    _stderr: _Drain | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        """Send sig to our own child and wait; returns (exit code, stderr)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.late_output = self._stdout.text() if self._stdout else ""
        return self.process.returncode, self._stderr.text() if self._stderr else ""


def start_proxy_process(args: Sequence[str], timeout: float = 20.0) -> ProxyProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    stderr = _Drain(process.stderr)
    deadline = time.monotonic() + timeout
    early: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = _LISTEN.search(line)
        if match:
            url = f"http://{match.group(1)}:{match.group(2)}"
            return ProxyProcess(process, url, line.strip(), "".join(early), "", _Drain(process.stdout), stderr)
        early.append(line)
    process.kill()
    process.wait()
    process.stdout.close()
    raise AssertionError(f"proxy did not start: {stderr.text()}")
