"""Multi-label and regression on real images with the real offline backbone: scikit-learn's
handwritten digits (8 x 8 scans) with two tags each (odd or even, and "large" for 5 and over) or
the digit's value as a number, fine-tuned from EfficientNet-Lite0's ImageNet weights. What a user
would see: the fine-tune beats the problem type's constant baseline by far."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tunelab

pytestmark = pytest.mark.e2e


def digit_manifests(folder: Path, problem: str, n: int = 300) -> tuple[Path, Path]:
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(d.target))[:n]
    rows = []
    for i in idx:
        path = folder / f"{i}.png"
        Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(path)
        y = int(d.target[i])
        label = (
            "|".join(["even" if y % 2 == 0 else "odd"] + (["large"] if y >= 5 else [])) if problem == "multi_label" else str(y)
        )
        rows.append((path.name, label))
    out = []
    for name, part in (("train.csv", rows[: n * 2 // 3]), ("test.csv", rows[n * 2 // 3 :])):
        with open(folder / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows(part)
        out.append(folder / name)
    return out[0], out[1]


@pytest.mark.parametrize(
    "problem, primary, constant, floor", [("multi_label", "map", "majority", 0.75), ("regression", "r2", "mean", 0.5)]
)
def test_lite0_learns_real_digits_as_tags_or_values(tmp_path, problem, primary, constant, floor):
    train, test = digit_manifests(tmp_path, problem)
    run = tunelab.fit(
        {
            "run": {"dir": str(tmp_path / "runs"), "progress": False, "seed": 0},
            "data": {"train": str(train), "test": str(test), "problem": problem, "image_size": 32},
            "model": {"backbone": "tf_efficientnet_lite0"},
            "recipe": "fast",
        }
    )
    m = run.metrics
    assert run.model.backbone.source == "packaged"
    assert m["test"][primary] > floor, m["test"]
    assert m["test"][primary] > m["baselines"]["test"][constant][primary] + 0.3
