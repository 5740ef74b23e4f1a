"""Diagnosis acceptance: runs built to overfit and to underfit on Fashion-MNIST (10 images per
class, EfficientNet-Lite0 offline weights), their verdicts, and the test accuracy after applying
the first recommendation printed.

    .venv/bin/python benchmarks/diagnosis.py      # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/diagnosis.py 0    # only the first scenario, keeping the other rows

Writes benchmarks/results/diagnosis.md.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import tunelab

HERE = Path(__file__).resolve().parent
BASE = ["run.progress=false", "data.samples_per_class=10", "data.val_samples_per_class=10",
        "regularization.augment=none"]
SCENARIOS = {
    "whole backbone unfrozen, no regularization, 30 epochs": [
        "stages=[{train: all, epochs: 30, lr: 3.0e-4, schedule: constant, weight_decay: 0}]"],
    "absurdly strong L2-SP (strength 1000)": [
        "regularization.penalties=[{type: l2sp, strength: 1000.0, layers: all, params: all}]"],
    "too small a learning rate (1e-6)": ["stages.0.lr=1.0e-6", "stages.1.lr_scale=1.0"],
}


def as_override(rec: str) -> str:
    """'--set "key=value"  # why' -> 'key=value'."""
    return rec.split("  #")[0].removeprefix("--set ").strip().strip('"')


def fit(tmp: str, name: str, overrides: list[str]) -> tunelab.Run:
    with contextlib.redirect_stdout(io.StringIO()):
        return tunelab.fit(HERE.parent / "examples" / "default.yaml",
                           overrides=[f"run.dir={tmp}", f"run.name={name}", *BASE, *overrides])


def main() -> None:
    import sys

    only = [int(x) for x in sys.argv[1:]] or list(range(len(SCENARIOS)))
    results = HERE / "results" / "diagnosis.md"
    kept = {line.split(" | ")[0][2:]: line for line in results.read_text().splitlines()[4:]
            if line.startswith("| ")} if results.is_file() else {}
    lines = ["| scenario | verdict | evidence | first recommendation | test accuracy before | after |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (title, overrides) in enumerate(SCENARIOS.items()):
            if i not in only:
                if title in kept:
                    lines.append(kept[title])
                continue
            run = fit(tmp, f"s{i}", overrides)
            d = run.metrics["diagnosis"]
            rec = d["recommendations"][0] if d["recommendations"] else ""
            after = fit(tmp, f"s{i}-fixed", overrides + [as_override(rec)]) if rec else None
            row = (f"| {title} | {d['verdict']} | {'; '.join(d['evidence'])} | `{rec.split('  #')[0]}` | "
                   f"{run.metrics['test']['accuracy']:.4f} | "
                   f"{after.metrics['test']['accuracy']:.4f} |" if after else "- |")
            print(row, flush=True)
            lines.append(row)
    text = (__doc__.split("\n\n")[0] + "\n\n" + "\n".join(lines) + "\n")
    (HERE / "results" / "diagnosis.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
