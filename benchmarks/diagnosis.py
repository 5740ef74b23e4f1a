"""Diagnosis acceptance: runs built to overfit and to underfit on Fashion-MNIST (10 images per
class, EfficientNet-Lite0 offline weights), their verdicts, and the test accuracy after applying
the first recommendation printed.

    .venv/bin/python benchmarks/diagnosis.py      # 3 seeds per scenario, about 20 minutes on 2 cores

Writes benchmarks/results/diagnosis.md.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import tunelab

HERE = Path(__file__).resolve().parent
BASE = ["run.progress=false", "data.samples_per_class=10", "data.val_samples_per_class=10", "regularization.augment=none"]
SCENARIOS = {
    "whole backbone unfrozen, no regularization, 30 epochs": [
        "stages=[{train: all, epochs: 30, lr: 3.0e-4, schedule: constant, weight_decay: 0}]"
    ],
    "absurdly strong L2-SP (strength 1000)": [
        "regularization.penalties=[{type: l2sp, strength: 1000.0, layers: all, params: all}]"
    ],
    "too small a learning rate (1e-6)": ["stages.0.lr=1.0e-6", "stages.1.lr_scale=1.0"],
}


def as_override(rec: str) -> str:
    """'--set "key=value"  # why' -> 'key=value'."""
    return rec.split("  #")[0].removeprefix("--set ").strip().strip('"')


def fit(tmp: str, name: str, overrides: list[str]) -> tunelab.Run:
    with contextlib.redirect_stdout(io.StringIO()):
        return tunelab.fit(
            HERE.parent / "examples" / "default.yaml", overrides=[f"run.dir={tmp}", f"run.name={name}", *BASE, *overrides]
        )


SEEDS = (0, 1, 2)


def main() -> None:
    import statistics

    results = HERE / "results" / "diagnosis.md"
    lines = [
        "| scenario | seed | verdict | evidence | first recommendation printed | test accuracy before | after |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = ["| scenario | verdicts | before, mean | after, mean | improved on |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (title, overrides) in enumerate(SCENARIOS.items()):
            before, after, verdicts = [], [], []
            for seed in SEEDS:
                seeded = overrides + [f"run.seed={seed}", f"data.seed={seed}"]
                run = fit(tmp, f"s{i}-{seed}", seeded)
                d = run.metrics["diagnosis"]
                rec = d["recommendations"][0] if d["recommendations"] else ""
                fixed = fit(tmp, f"s{i}-{seed}-fixed", seeded + [as_override(rec)]) if rec else None
                before.append(run.metrics["test"]["accuracy"])
                after.append(fixed.metrics["test"]["accuracy"] if fixed else float("nan"))
                verdicts.append(d["verdict"])
                row = (
                    f"| {title} | {seed} | {d['verdict']} | {'; '.join(d['evidence'])} | `{rec.split('  #')[0]}` | "
                    f"{before[-1]:.4f} | {after[-1]:.4f} |"
                )
                print(row, flush=True)
                lines.append(row)
            better = sum(a > b for a, b in zip(after, before))
            summary.append(
                f"| {title} | {', '.join(verdicts)} | {statistics.mean(before):.4f} | "
                f"{statistics.mean(after):.4f} | {better} of {len(SEEDS)} seeds |"
            )
    text = __doc__.split("\n\n")[0] + "\n\n" + "\n".join(summary) + "\n\nPer seed:\n\n" + "\n".join(lines) + "\n"
    results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
