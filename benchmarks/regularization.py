"""Regularization benchmark: Fashion-MNIST, 10 and 50 training images per class, EfficientNet-Lite0
(offline weights), the default two-stage recipe, several seeds; test accuracy on the official 10k
test images for each way of regularizing.

    .venv/bin/python benchmarks/regularization.py                  # the full grid (about 30 min on 2 cores)
    .venv/bin/python benchmarks/regularization.py --sizes 10 --seeds 0 --variants none auto

Every run's result is appended to benchmarks/results/regularization.jsonl as it finishes (so an
interrupted benchmark keeps what it measured); the table of mean +- std is written to
benchmarks/results/regularization.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import tunelab

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# Everything off; each variant switches one thing on (auto chooses for itself).
NONE = ["regularization.augment=none", "stages.0.weight_decay=0", "stages.1.weight_decay=0"]
VARIANTS: dict[str, list[str]] = {
    "none": NONE,
    "weight_decay": ["regularization.augment=none", "stages.0.weight_decay=0.05", "stages.1.weight_decay=0.05"],
    "l2sp": NONE + ["regularization.penalties=[{type: l2sp, strength: 1.0, layers: all, params: all}]"],
    "dropout": NONE + ["model.head.dropout=0.5"],
    "augment_light": NONE[1:] + ["regularization.augment=light"],
    "auto": ["regularization.auto=true"],
}


def run_one(variant: str, size: int, seed: int, workdir: Path) -> dict:
    overrides = [
        f"run.dir={workdir}",
        f"run.name={variant}-{size}-{seed}",
        "run.progress=false",
        f"run.seed={seed}",
        f"data.seed={seed}",
        f"data.samples_per_class={size}",
        "data.val_samples_per_class=10",
        *VARIANTS[variant],
    ]
    t0 = time.perf_counter()
    run = tunelab.fit(HERE.parent / "examples" / "default.yaml", overrides=overrides)
    return {
        "variant": variant,
        "per_class": size,
        "seed": seed,
        "test_accuracy": run.metrics["test"]["accuracy"],
        "test_n": run.metrics["test"]["n"],
        "seconds": time.perf_counter() - t0,
    }


def table(rows: list[dict], variants: list[str], sizes: list[int]) -> str:
    lines = ["| variant | " + " | ".join(f"{s} per class" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for v in variants:
        cells = []
        for s in sizes:
            accs = [r["test_accuracy"] for r in rows if r["variant"] == v and r["per_class"] == s]
            if not accs:
                cells.append("-")
            elif len(accs) == 1:
                cells.append(f"{accs[0]:.4f} (1 seed)")
            else:
                cells.append(f"{statistics.mean(accs):.4f} +- {statistics.stdev(accs):.4f} ({len(accs)} seeds)")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=RESULTS / "regularization.jsonl")
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in a.out.read_text().splitlines()] if a.out.is_file() else []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            for seed in a.seeds:
                for v in a.variants:
                    if any(r["variant"] == v and r["per_class"] == size and r["seed"] == seed for r in done):
                        continue
                    r = run_one(v, size, seed, Path(tmp))
                    done.append(r)
                    with open(a.out, "a") as f:
                        f.write(json.dumps(r) + "\n")
                    print(
                        f"{v:>14} {size:>3}/class seed {seed}: test accuracy {r['test_accuracy']:.4f} ({r['seconds']:.0f} s)",
                        flush=True,
                    )
    md = table(done, list(VARIANTS), sorted({r["per_class"] for r in done}))
    (a.out.with_suffix(".md")).write_text(
        "Fashion-MNIST, EfficientNet-Lite0 (offline ImageNet weights), default two-stage recipe, 64 px; "
        "test accuracy on the official 10,000 test images, mean +- std over seeds "
        "(each seed draws other training images).\n\n" + md + "\n"
    )
    print(md)


if __name__ == "__main__":
    main()
