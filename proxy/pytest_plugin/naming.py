"""Where a test's cassettes go: `<root>/<module name>/<test name>/`, the root being `cassettes/` beside the test
file unless configured. (pure)

The test name is pytest-recording's: `Class.test` for a method (`Outer.Inner.test` for nested classes), with
the parametrize id kept (`test_x[a-b]`) and each character that cannot go in a file name replaced by `-`. A
name longer than a file name may be is cut and given a hash, so distinct tests keep distinct directories.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FORBIDDEN = "<>?%*:|\"'/\\"
MAX_NAME = 200  # below the usual 255-byte limit, leaving room for the proxy's own subfolders


def safe_name(text: str) -> str:
    """`text` as one file name: forbidden and control characters replaced, `.`/`..` avoided, length bounded."""
    name = "".join("-" if char in FORBIDDEN or ord(char) < 32 else char for char in text).strip()
    if name in ("", ".", ".."):
        name = name.replace(".", "-") or "-"
    if len(name.encode("utf-8")) > MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        name = name.encode("utf-8")[: MAX_NAME - 20].decode("utf-8", "ignore") + "..." + digest
    return name


def default_name(nodeid: str) -> str:
    """`tests/test_a.py::TestX::test_y[1]` -> `TestX.test_y[1]` (what follows the file, joined with dots)."""
    parts = nodeid.split("::")[1:]
    return ".".join(parts) if parts else nodeid


def cassette_dir(test_file: Path, nodeid: str, root: Path | None = None, name: str | None = None) -> Path:
    """The directory of a test's cassettes; `name` (the marker's) replaces the test's name."""
    base = test_file.parent / "cassettes" if root is None else root
    return base / safe_name(test_file.stem) / safe_name(name if name is not None else default_name(nodeid))
