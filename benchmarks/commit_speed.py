"""Speed of the default recipe in this checkout against an earlier commit: the same run of
``benchmarks/speed.py --one tunelab`` (Fashion-MNIST, EfficientNet-Lite0 offline weights, the LP-FT
default, seed 0), each in a fresh process, the two commits alternating on the same machine, so a
restructuring of the code can be shown to cost no speed (and to compute the same numbers).

    .venv/bin/python benchmarks/commit_speed.py --baseline fbb0f9d --rounds 1 --size 1000

Both commits (the baseline and this checkout's HEAD) are checked out with ``git worktree`` into
temporary folders and imported from there (``PYTHONPATH``) with the same virtual environment and
this checkout's speed.py, so edits made while the benchmark runs do not leak into it. The table
goes to benchmarks/results/commit_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _one(src: Path, size: int, epochs: tuple[int, int]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "speed.py"),
        "--one",
        "tunelab",
        "--sizes",
        str(size),
        "--epochs",
        *map(str, epochs),
    ]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"the run from {src} failed:\n{out.stderr[-3000:]}")
    return {**json.loads(line[7:]), "load_start": load, "load_end": os.getloadavg()[0]}


def _table(args: argparse.Namespace, runs: dict[str, list[dict]]) -> str:
    lines = [
        f"`benchmarks/commit_speed.py --baseline {args.baseline} --rounds {args.rounds} --size {args.size}`: "
        f"{args.size:,} Fashion-MNIST images, EfficientNet-Lite0, the default recipe (epochs "
        f"{args.epochs[0]} + {args.epochs[1]}), seed 0, each run a fresh process, the commits alternating; "
        "medians over the rounds; 2-core CPU machine, 1-min load average at each run's start / end.",
        "",
        "| commit | training s (both stages) | fit s (end to end) | peak RSS MB | test accuracy | load |",
        "|---|---|---|---|---|---|",
    ]
    for who, rs in runs.items():

        def med(key: str, rs: list[dict] = rs) -> float:
            return statistics.median(r[key] for r in rs)

        loads = ", ".join(f"{r['load_start']:.1f} / {r['load_end']:.1f}" for r in rs)
        lines.append(
            f"| {who} | {med('train_seconds'):.1f} | {med('fit_seconds'):.1f} | {med('peak_rss_mb'):.0f} | "
            f"{med('test_accuracy'):.4f} | {loads} |"
        )
    base, now = (statistics.median(r["train_seconds"] for r in rs) for rs in runs.values())
    lines += ["", f"Training time, this checkout / baseline: {now / base:.2f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="git commit to compare against")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, nargs=2, default=(4, 16))
    a = ap.parse_args()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    runs: dict[str, list[dict]] = {f"{a.baseline} (baseline)": [], f"{head} (this checkout)": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = [Path(tmp) / "baseline", Path(tmp) / "head"]
        for tree, commit in zip(trees, (a.baseline, head)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), commit], check=True)
        try:
            srcs = dict(zip(runs, (tree / "src" for tree in trees)))
            for rnd in range(a.rounds):
                order = list(runs) if rnd % 2 == 0 else list(reversed(runs))
                for who in order:
                    runs[who].append(_one(srcs[who], a.size, tuple(a.epochs)))
                    print(who, json.dumps({k: v for k, v in runs[who][-1].items() if k != "phases"}), flush=True)
        finally:
            for tree in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)
    text = _table(a, runs)
    (ROOT / "benchmarks" / "results" / "commit_speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
