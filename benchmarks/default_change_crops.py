"""The default before and after crops in ``augment: auto`` and 20 all-layers epochs (2026-12-07),
paired per task and seed from the committed suite rows: the old default of a draw is its oldest
default row that these changes superseded (or its current row where they changed nothing: the
text tasks). Prints the table of benchmarks/results/default_change_crops.md.

    .venv/bin/python benchmarks/default_change_crops.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suite
from default_change_probe import paired_table

# the notes of the rows these changes superseded (the diagnosis re-run changed verdicts, not accuracy)
CHANGES = ("augment: auto adds crops", "diagnosis: loss jumps read over blocks", "default image recipe: 20 all-layers")


def old_and_new() -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    new = {
        (r["instance"], r["seed"]): r["test_accuracy"]
        for r in suite.read_done(suite.RESULTS / "suite.jsonl")
        if r["method"] == "default"
    }
    old: dict[tuple[str, int], float] = {}
    for r in (json.loads(x) for x in (suite.RESULTS / "suite.jsonl").read_text().splitlines() if x.strip()):
        if r["method"] == "default" and r.get("superseded", "").startswith(CHANGES):
            old.setdefault((r["instance"], r["seed"]), r["test_accuracy"])  # the file is in run order
    return {**new, **old}, new


if __name__ == "__main__":
    print(paired_table(*old_and_new()))
