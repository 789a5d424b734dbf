"""The benchmark's own virtualenvs: bench/.venv (mitmproxy, py-spy, and aiohttp + uvloop for the load side) and
bench/.venv-litellm (LiteLLM's proxy, apart: its many dependencies would fight mitmproxy's).

None of these become project dependencies. Whatever cannot be installed is reported, and the run goes on
without it (the load generator and upstream then run on the project's interpreter, without uvloop).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv"
LITELLM_VENV = Path(__file__).resolve().parent / ".venv-litellm"
GROUPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    # (what for, pip packages, import or executable that shows it is there)
    ("load side", ("aiohttp", "uvloop"), "import:aiohttp,uvloop"),
    ("profiler", ("py-spy",), "bin:py-spy"),
    ("mitmproxy", ("mitmproxy",), "bin:mitmdump"),
)


@dataclass
class Tools:
    load_python: str
    mitmdump: str | None = None
    py_spy: str | None = None
    litellm: str | None = None
    notes: list[str] = field(default_factory=list)


def _present(python: Path, check: str) -> bool:
    kind, _, what = check.partition(":")
    if kind == "bin":
        return (VENV / "bin" / what).exists()
    probe = subprocess.run([str(python), "-c", f"import {what}"], capture_output=True, check=False)
    return probe.returncode == 0


def _pip(python: Path, packages: tuple[str, ...]) -> str | None:
    try:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *packages],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "pip install timed out after 300 s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
        return (lines[-1] if lines else f"pip exited {done.returncode}")[:200]
    return None


def ensure(install: bool = True) -> Tools:
    python = VENV / "bin" / "python"
    tools = Tools(load_python=sys.executable)
    if not python.exists():
        if not install:
            tools.notes.append(f"{VENV} missing and --no-install given: no mitmproxy, no py-spy, no uvloop")
            return tools
        made = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True, check=False)
        if made.returncode != 0:
            tools.notes.append(f"cannot create {VENV}: {made.stderr.strip()[:200]}")
            return tools
    for purpose, packages, check in GROUPS:
        if not _present(python, check) and install:
            error = _pip(python, packages)
            if error:
                tools.notes.append(f"{purpose}: pip install {' '.join(packages)} failed: {error}")
        if not _present(python, check):
            tools.notes.append(f"{purpose}: not available in {VENV}")
            continue
        if purpose == "load side":
            tools.load_python = str(python)
        elif purpose == "profiler":
            tools.py_spy = str(VENV / "bin" / "py-spy")
        else:
            tools.mitmdump = str(VENV / "bin" / "mitmdump")
    return tools


def version_of(python: str, module: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def ensure_litellm(tools: Tools, install: bool = True) -> None:
    """LiteLLM's proxy (`litellm[proxy]`) in its own venv; optional: when it cannot be had, a note says why."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists() and install:
        if not (LITELLM_VENV / "bin" / "python").exists():
            made = subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], capture_output=True, check=False)
            if made.returncode != 0:
                tools.notes.append(f"LiteLLM: cannot create {LITELLM_VENV}")
                return
        error = _pip(LITELLM_VENV / "bin" / "python", ("litellm[proxy]",))
        if error:
            tools.notes.append(f"LiteLLM: pip install litellm[proxy] failed: {error}")
    if binary.exists():
        tools.litellm = str(binary)
    else:
        tools.notes.append(f"LiteLLM: not available in {LITELLM_VENV} (skipped)")
