"""Run the real `proxy` command in a child process (started and stopped by its own pid)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass
class ProxyProcess:
    process: subprocess.Popen[str]
    url: str
    startup_line: str

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        """Send sig to our own child and wait; returns (exit code, stderr)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return self.process.returncode, stderr


def start_proxy_process(args: Sequence[str], timeout: float = 20.0) -> ProxyProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = _LISTEN.search(line)
        if match:
            return ProxyProcess(process, f"http://{match.group(1)}:{match.group(2)}", line.strip())
    process.kill()
    _, stderr = process.communicate()
    raise AssertionError(f"proxy did not start: {stderr}")
