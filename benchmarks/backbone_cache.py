"""What the split freeze-boundary cache buys per backbone family: the cost of a stage-2 epoch that
trains the head and the last 2 blocks (``last_blocks: 2``), with the cache (the frozen prefix's
outputs computed once, only the trainable tail run) against without it (the whole network run every
batch), in one process, the two runs of a family back to back.

Random weights (``pretrained: false``: the cost does not depend on the values), synthetic images,
``run.threads: 1``; stage 1 trains the head 1 epoch, stage 2 runs 3 epochs and the faster of its
second and third is taken (training only, no evaluation; the first has warm-up costs, and the
machine is shared). The one-time extraction is reported beside it.

    .venv/bin/python benchmarks/backbone_cache.py                          # every family at 64 px
    .venv/bin/python benchmarks/backbone_cache.py --sizes 224 --families resnet18 vit_tiny_patch16_224

Rows go to benchmarks/results/backbone_cache.jsonl and the table to benchmarks/results/backbone_cache.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FAMILIES = [
    "resnet18",
    "regnety_002",
    "densenet121",
    "vgg11",
    "efficientnet_b0",
    "mobilenetv2_050",
    "mobilenetv3_small_050",
    "ghostnet_050",
    "efficientvit_b0",
    "fastvit_t8",
    "mobilevit_xxs",
    "convnext_atto",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "eva02_tiny_patch14_224",
    "levit_128s",
    "swin_tiny_patch4_window7_224",
]


def _images(root: Path, classes: int, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def _run(arch: str, size: int, cached: bool, data: Path, work: Path, train_per_class: int) -> dict[str, Any]:
    import tunelab

    cfg = {
        "run": {
            "dir": str(work),
            "name": f"{arch}-{size}-{'cached' if cached else 'uncached'}",
            "progress": False,
            "threads": 1,
            "baselines": False,
            "seed": 0,
        },
        "data": {
            "train": str(data),
            "image_size": size,
            "samples_per_class": train_per_class,
            "val_samples_per_class": 2,
            "test_samples_per_class": 2,
            "batch_size": 16,
            "refit": "never",
            "evaluate_test": False,
        },
        "model": {"backbone": arch, "pretrained": False},
        "regularization": {"augment": "none"},
        "cache": {"enabled": cached, "autocast": "off"},
        "stages": [
            {"name": "head", "train": "head", "epochs": 1, "lr": 3e-3},
            {"name": "top", "train": ["head", {"last_blocks": 2}], "epochs": 3, "lr": 3e-4},
        ],
    }
    t0 = time.perf_counter()
    run = tunelab.fit(cfg)
    stage2 = [r for r in run.history if r["stage"] == 1]
    log = (run.dir / "log.txt").read_text()
    boundary = next(
        (
            line.split("cache: ", 1)[1].split(";")[0]
            for line in log.splitlines()
            if "cache: the input of" in line or "cache: the last feature map" in line
        ),
        "",
    )
    return {
        "arch": arch,
        "size": size,
        "cached": cached,
        "epoch_s": min(r["seconds"] for r in stage2[1:]),
        "cache_s": sum(r.get("cache_seconds", 0.0) for r in run.history),
        "boundary": boundary,
        "wall_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="*", default=FAMILIES)
    ap.add_argument("--sizes", nargs="*", type=int, default=[64])
    ap.add_argument("--images", type=int, default=64, help="training images (4 classes)")
    args = ap.parse_args()
    logging.getLogger("tunelab").setLevel(logging.WARNING)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = _images(Path(tmp) / "images", 4, args.images // 4 + 4)
        for size in args.sizes:
            for arch in args.families:
                pair = [_run(arch, size, cached, data, Path(tmp) / "runs", args.images // 4) for cached in (True, False)]
                row = {
                    "arch": arch,
                    "size": size,
                    "cached_epoch_s": pair[0]["epoch_s"],
                    "uncached_epoch_s": pair[1]["epoch_s"],
                    "ratio": pair[1]["epoch_s"] / pair[0]["epoch_s"],
                    "extraction_s": pair[0]["cache_s"],
                    "boundary": pair[0]["boundary"],
                    "images": args.images,
                    "machine": platform.processor() or platform.machine(),
                    "threads": 1,
                }
                print(json.dumps(row), flush=True)
                with open(RESULTS / "backbone_cache.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
    _table()


def _table() -> None:
    """The table of the newest row of every (family, size) in the jsonl."""
    latest = {}
    for line in (RESULTS / "backbone_cache.jsonl").read_text().splitlines():
        r = json.loads(line)
        latest[(r["size"], r["arch"])] = r
    rows = list(latest.values())
    lines = [
        "# Stage-2 epoch cost with the split cache against without it, per family",
        "",
        "`last_blocks: 2`, random weights, one thread, synthetic images (see benchmarks/backbone_cache.py); "
        "seconds for the faster of stage-2 epochs 2 and 3 (training only), ratio = uncached / cached; extraction is the "
        "cache's one-time pass (both stages' boundaries).",
        "",
        "| family | px | images | cached epoch s | uncached epoch s | ratio | extraction s | stage-2 boundary |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['size']} | {r['images']} | {r['cached_epoch_s']:.3f} | "
            f"{r['uncached_epoch_s']:.3f} | {r['ratio']:.1f}x | {r['extraction_s']:.2f} | {r['boundary']} |"
        )
    (RESULTS / "backbone_cache.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
