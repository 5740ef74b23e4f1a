"""Start-up time: ``import tunelab`` and ``tunelab --help`` of this checkout against an earlier
commit, interleaved on the same machine (each command in a fresh process, the two alternating).

    .venv/bin/python benchmarks/import_time.py --baseline c9e07b3 --rounds 5

The baseline commit is checked out with ``git worktree`` into a temporary folder and imported from
there (``PYTHONPATH``), with the same virtual environment. The table goes to
benchmarks/results/import_time.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"import tunelab": ["-c", "import tunelab"], "tunelab --help": ["-m", "tunelab", "--help"]}


def _seconds(src: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="git commit to compare against")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), a.baseline], check=True)
        try:
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(a.rounds):
                for name, args in COMMANDS.items():
                    for who, src in (("baseline", old / "src"), ("this checkout", ROOT / "src")):
                        times.setdefault((name, who), []).append(_seconds(src, args))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=True)
    load = os.getloadavg()[0]
    lines = [
        f"Median of {a.rounds} interleaved runs, fresh process each; baseline commit {a.baseline}; "
        f"1-min load average at the end {load:.1f} (2-core machine).",
        "",
        "| command | baseline (s) | this checkout (s) | speed-up |",
        "|---|---|---|---|",
    ]
    for name in COMMANDS:
        b, n = statistics.median(times[(name, "baseline")]), statistics.median(times[(name, "this checkout")])
        lines.append(f"| `{name}` | {b:.2f} | {n:.2f} | {b / n:.0f}x |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results" / "import_time.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
