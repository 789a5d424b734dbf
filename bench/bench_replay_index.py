"""How long `proxy replay` takes to index 10,000 cassettes (issue target: well under 2 s).

    python bench/bench_replay_index.py [COUNT]

Copies the sample cassettes (streams included) COUNT times with distinct requests into a temporary directory,
then times building the replay index from it, as `proxy replay DIR` does at startup.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from proxy.settings import RecordMode, Settings
from proxy.state import load_replay_index

SAMPLES = Path(__file__).resolve().parent.parent / "cassettes"


def make_cassettes(root: Path, count: int) -> None:
    """`count` cassettes under root made from the samples, each with a prompt of its own."""
    sources = sorted(path for path in SAMPLES.rglob("*.json") if not path.name.startswith("."))
    for number in range(count):
        data = json.loads(sources[number % len(sources)].read_text())
        data["id"] = f"bench-{number}"
        data["request"]["body"]["json"]["messages"][0]["content"] += f" #{number}"
        path = root / f"{number // 1000:03d}" / f"{number:06d}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=2))


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_cassettes(root, count)
        started = time.perf_counter()
        index, _ = load_replay_index(Settings(mode=RecordMode.REPLAY, cassettes=root))
        elapsed = time.perf_counter() - started
    print(f"indexed {len(index)} cassettes in {elapsed:.2f} s ({len(index) / elapsed:,.0f}/s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
