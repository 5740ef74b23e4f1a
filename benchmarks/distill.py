"""Knowledge distillation on Fashion-MNIST: does a Lite2 teacher make a cheaper Lite0 student better?

The set-up of issue 16's acceptance: 100 labelled training images per class, 5,000 more training
images without their labels (none of them in the labelled, validation or test images), the
official test split. The teacher: EfficientNet-Lite2 (packaged ImageNet weights) fine-tuned at
64 px with the default recipe, trained once. The student: EfficientNet-Lite0 at 32 px (about a
seventh of the teacher's inference cost), the default recipe, alone on the labelled images or
distilled (``distill: {teacher, temperature, alpha, unlabeled}``), for each seed. Reported: test
accuracy of both per seed, mean and spread, and the seconds of each run (the cost of distilling
against the student's plain run, all in one process on the same machine).

    .venv/bin/python benchmarks/distill.py --seeds 0 --threads 1     # one seed first: the time it takes
    .venv/bin/python benchmarks/distill.py --seeds 0 1 2             # the acceptance run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import tunelab
from tunelab.config import load_config
from tunelab.vision.data import split_indices
from tunelab.vision.data._sources import fashion_mnist

ROOT = Path(__file__).resolve().parents[1]


def unlabeled_folder(folder: Path, cfg: Any, n: int) -> Path:
    """``n`` Fashion-MNIST training images that are neither labelled training nor validation images
    of ``cfg``'s split, as PNG files in ``folder`` (written once)."""
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    src = fashion_mnist("train")
    train_idx, val_idx, _, _ = split_indices(src.labels, src.classes, src.name, cfg.data, separate_test=True)
    free = np.setdiff1d(np.arange(len(src.labels)), np.concatenate([train_idx, val_idx]))
    pick = np.random.default_rng(1234).choice(free, size=n, replace=False)
    folder.mkdir(parents=True, exist_ok=True)
    for i in pick:
        Image.fromarray(src.images[i]).save(folder / f"fmnist-train-{i}.png")
    return folder


def fit(overrides: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = tunelab.fit(ROOT / "examples" / "default.yaml", overrides=overrides)
    return {"dir": str(run.dir), "test_accuracy": run.metrics["test"]["accuracy"], "seconds": time.perf_counter() - t0}


def reuse(run_dir: Path) -> dict[str, Any]:
    """A finished teacher run's figures (its seconds are its own run's)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"dir": str(run_dir), "test_accuracy": metrics["test"]["accuracy"], "seconds": metrics["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--unlabeled", type=int, default=5000)
    ap.add_argument("--test-per-class", type=int, default=300, help="official test images per class")
    ap.add_argument("--student-size", type=int, default=32)
    ap.add_argument("--teacher-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/tunelab-distill-bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distill.md")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="more overrides for every run")
    ap.add_argument("--teacher-run", type=Path, help="a finished teacher run of an earlier call (same data) to reuse")
    args = ap.parse_args()

    common = [
        f"run.dir={args.work / 'runs'}",
        "run.progress=false",
        f"data.samples_per_class={args.per_class}",
        "data.val_samples_per_class=20",
        f"data.test_samples_per_class={args.test_per_class}",
        f"data.decode_cache={args.work / 'decoded'}",
        *args.extra,
    ]
    if args.threads:
        common.append(f"run.threads={args.threads}")
    folder = unlabeled_folder(args.work / "unlabeled", load_config(ROOT / "examples" / "default.yaml", common), args.unlabeled)
    teacher = (
        reuse(args.teacher_run)
        if args.teacher_run
        else fit(common + ["run.name=teacher", "model.backbone=tf_efficientnet_lite2", f"data.image_size={args.teacher_size}"])
    )
    print(f"teacher: test accuracy {teacher['test_accuracy']:.4f} in {teacher['seconds']:.0f} s", flush=True)
    rows = []
    for seed in args.seeds:
        student = common + [f"run.seed={seed}", f"data.image_size={args.student_size}", "model.backbone=tf_efficientnet_lite0"]
        plain = fit(student + [f"run.name=plain-{seed}"])
        distilled = fit(
            student + [f"run.name=distilled-{seed}", f"distill.teacher={teacher['dir']}", f"distill.unlabeled={folder}"]
        )
        rows.append({"seed": seed, "plain": plain, "distilled": distilled})
        print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(report(args, teacher, rows))
    print(args.out.read_text())


def report(args: argparse.Namespace, teacher: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    def stats(key: str, what: str) -> tuple[float, float]:
        xs = [r[key][what] for r in rows]
        return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0

    lines = [
        "# Knowledge distillation: Lite2 teacher, Lite0 student (benchmarks/distill.py)",
        "",
        f"Fashion-MNIST, {args.per_class} labelled images per class (+20 per class for validation), "
        f"{args.unlabeled} unlabelled training images, {args.test_per_class} official test images per class. "
        f"Teacher: EfficientNet-Lite2 (packaged ImageNet weights) at {args.teacher_size} px, default recipe: test "
        f"accuracy {teacher['test_accuracy']:.4f}, {teacher['seconds']:.0f} s. Student: EfficientNet-Lite0 at "
        f"{args.student_size} px, default recipe, alone or distilled (T 2, alpha 0.5, the unlabelled images "
        f"added). Threads: {args.threads or 'torch default'}; extra overrides: {args.extra or 'none'}.",
        "",
        "| seed | student alone | distilled | seconds alone | seconds distilled |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['plain']['test_accuracy']:.4f} | {r['distilled']['test_accuracy']:.4f} | "
            f"{r['plain']['seconds']:.0f} | {r['distilled']['seconds']:.0f} |"
        )
    (pm, ps), (dm, ds) = stats("plain", "test_accuracy"), stats("distilled", "test_accuracy")
    (pt, _), (dt, _) = stats("plain", "seconds"), stats("distilled", "seconds")
    lines += [
        "",
        f"Mean test accuracy: alone {pm:.4f} +- {ps:.4f}, distilled {dm:.4f} +- {ds:.4f} (standard "
        f"deviation over {len(rows)} seed(s)); gain {dm - pm:+.4f}. Cost: the distilled run took {dt / pt:.2f}x "
        "the student's plain run (it trains on the unlabelled images too, and runs the teacher on the batches "
        "of the stage that trains the whole network).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
