"""The default before and after the probe on the pretrained features (lr_if_features_fit, augment:
auto), paired per task and seed from the committed suite rows: the old default is the first default
row of each draw on the 2026-12-06 code, or the lr3e4 row of suite_features_fit.jsonl where the lr
rule applies. Prints the table of benchmarks/results/default_change_probe.md.

    .venv/bin/python benchmarks/default_change_probe.py
"""

from __future__ import annotations

import json
import statistics as st
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suite

# the notes of the rows this change superseded: those rows are the old default
CHANGES = ("re-measured with lr_if_features_fit", "re-measured with augment: auto")


def old_and_new() -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    rows = [json.loads(x) for x in (suite.RESULTS / "suite.jsonl").read_text().splitlines() if x.strip()]
    new = {
        (r["instance"], r["seed"]): r["test_accuracy"]
        for r in suite.read_done(suite.RESULTS / "suite.jsonl")
        if r["method"] == "default"
    }
    old: dict[tuple[str, int], float] = {}
    for r in rows:
        note = r.get("superseded", "")
        if r["method"] == "default" and "error" not in r and (not note or note.startswith(CHANGES)):
            old.setdefault((r["instance"], r["seed"]), r["test_accuracy"])
    # the old all-layers rate (3e-4 on every seed) where the lr rule applies, measured beside it
    for r in suite.read_done(suite.RESULTS / "suite_features_fit.jsonl"):
        if r["method"] == "lr3e4":
            old[(r["instance"], r["seed"])] = r["test_accuracy"]
    for k in [k for k in old if k[0] == "old-photo-crops-20" and k[1] >= 10]:
        del old[k]  # seeds 10-19 ran on the new default only
    return old, new


def paired_table(old: dict[tuple[str, int], float], new: dict[tuple[str, int], float]) -> str:
    """Old and new default per task, paired on the draws (task, seed) both have, and the mean change."""
    lines = ["| task | seeds | old default | new default | new - old (paired) |", "|---|---|---|---|---|"]
    means = []
    for inst in [i.name for i in suite.INSTANCES]:
        ks = sorted(k for k in new if k[0] == inst and k in old)
        if not ks:
            continue
        d = [new[k] - old[k] for k in ks]
        sd = f" +- {st.stdev(d):.3f}" if len(d) > 1 else ""
        lines.append(
            f"| {inst} | {len(ks)} | {st.mean(old[k] for k in ks):.3f} | {st.mean(new[k] for k in ks):.3f} "
            f"| {st.mean(d):+.3f}{sd} |"
        )
        means.append(st.mean(d))
    lines.append(f"| **mean over {len(means)} tasks** | | | | {st.mean(means):+.3f} (worst {min(means):+.3f}) |")
    return "\n".join(lines)


def main() -> None:
    print(paired_table(*old_and_new()))


if __name__ == "__main__":
    main()
