"""Hyperparameter search acceptance: `tunelab tune examples/tune_fashion_mnist.yaml` (20 trials on
Fashion-MNIST, 20 training images per class, EfficientNet-Lite0 offline weights), timed, then the
best config against the default recipe on the official 10,000 test images, same data, several
training seeds.

    .venv/bin/python benchmarks/tune.py        # about 10 minutes on 2 cores

Writes benchmarks/results/tune.md and tune.jsonl. Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tunelab

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "tune_fashion_mnist.yaml"
DEFAULT = HERE.parent / "examples" / "default.yaml"
SEEDS = (0, 1, 2)  # training seeds (initialisation, order, augmentation); the data (data.seed) stays


def quiet_fit(config: Path, tmp: str, name: str, seed: int) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        run = tunelab.fit(config, overrides=[f"run.dir={tmp}", f"run.name={name}", f"run.seed={seed}", "run.progress=false"])
    return run.metrics


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = tunelab.tune(EXAMPLE, overrides=[f"run.dir={tmp}"])
        search_s = time.perf_counter() - t0
        counts = result.counts()
        print(
            f"search: {search_s:.0f} s, {counts}, best trial {result.best_trial} "
            f"val {result.best_value:.4f} {result.best_params}",
            file=sys.stderr,
        )
        for seed in SEEDS:
            for which, cfg in (("best", result.best_config), ("default", DEFAULT)):
                m = quiet_fit(cfg, tmp, f"{which}-{seed}", seed)
                rows.append(
                    {
                        "config": which,
                        "seed": seed,
                        "test_accuracy": m["test"]["accuracy"],
                        "test_loss": m["test"]["loss"],
                        "val_accuracy": m["val"]["accuracy"],
                        "seconds": m["seconds"],
                    }
                )
                print(rows[-1], file=sys.stderr)
        best_yaml = result.best_config.read_text()

    out = HERE / "results"
    with open(out / "tune.jsonl", "w") as f:
        f.write(
            json.dumps(
                {
                    "search_seconds": search_s,
                    "trials": counts,
                    "best_trial": result.best_trial,
                    "best_val": result.best_value,
                    "best_params": result.best_params,
                }
            )
            + "\n"
        )
        for r in rows:
            f.write(json.dumps(r) + "\n")
    acc = {w: [r["test_accuracy"] for r in rows if r["config"] == w] for w in ("best", "default")}
    loss = {w: [r["test_loss"] for r in rows if r["config"] == w] for w in ("best", "default")}
    wins = sum(b > d for b, d in zip(acc["best"], acc["default"]))
    lines = [
        "# Hyperparameter search on the demo (benchmarks/tune.py)",
        "",
        "`tunelab tune examples/tune_fashion_mnist.yaml`: the demo (Fashion-MNIST, 20 training images per class,",
        "64 px, EfficientNet-Lite0 offline weights) with 1,000 validation images, the default search space,",
        "TPE, median pruning after 10 epochs, 3 training seeds per trial (`tune.repeats`).",
        "",
        f"- search wall-clock: **{search_s:.0f} s** ({search_s / 60:.1f} min) on this machine's 2 CPU cores; trials: "
        + ", ".join(f"{v} {k}" for k, v in counts.items()),
        f"- best trial {result.best_trial}: mean validation accuracy {result.best_value:.4f} over its seeds; values: "
        + ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in result.best_params.items()),
        "",
        "Test accuracy on the official 10,000 test images; same 200 training images (data.seed 0) for all,",
        "training seed (run.seed) as given; seed 0 is the seed the search trained with.",
        "",
        "| run.seed | best config | default recipe | best - default | test loss best / default |",
        "|---|---|---|---|---|",
    ]
    for i, seed in enumerate(SEEDS):
        lines.append(
            f"| {seed} | {acc['best'][i]:.4f} | {acc['default'][i]:.4f} | {acc['best'][i] - acc['default'][i]:+.4f} "
            f"| {loss['best'][i]:.3f} / {loss['default'][i]:.3f} |"
        )
    lines.append(
        f"| mean | {statistics.mean(acc['best']):.4f} | {statistics.mean(acc['default']):.4f} | "
        f"{statistics.mean(acc['best']) - statistics.mean(acc['default']):+.4f} | "
        f"{statistics.mean(loss['best']):.3f} / {statistics.mean(loss['default']):.3f} |"
    )
    lines += [
        "",
        f"The best config beat the default recipe on {wins} of {len(SEEDS)} seeds.",
        "",
        "The best config as written (`best.yaml`):",
        "",
        "```yaml",
        best_yaml.strip(),
        "```",
        "",
    ]
    (out / "tune.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
