"""Shared fixtures: a tiny timm model (no download) on scikit-learn's bundled digits."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

TINY: dict[str, Any] = {
    "run": {"name": "tiny", "progress": False, "seed": 0},
    "data": {"train": "digits", "image_size": 32, "samples_per_class": 8, "val_samples_per_class": 4,
             "test_split": 0.2, "test_samples_per_class": 6, "batch_size": 16},
    "model": {"backbone": "test_efficientnet", "pretrained": False},
    "stages": [
        {"name": "head", "train": "head", "epochs": 2, "lr": 3e-3},
        {"name": "top", "train": ["head", {"last_blocks": 2}], "epochs": 3, "lr_scale": 0.1},
    ],
}


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> dict[str, Any]:
    """A config dict for a run of a few seconds; its run folder lives under tmp_path."""
    cfg = copy.deepcopy(TINY)
    cfg["run"]["dir"] = str(tmp_path / "runs")
    return cfg


def write_images(root: Path, classes: dict[str, int], size: int = 20) -> list[Path]:
    """Write ``n`` small RGB PNGs per class into root/<class>/; returns the files."""
    rng = np.random.default_rng(0)
    files = []
    for ci, (name, n) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            arr[:, :, ci % 3] += 150  # a class-dependent colour so the task is learnable
            f = d / f"img{i}.png"
            Image.fromarray(arr).save(f)
            files.append(f)
    return files


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_images(root, {"cat": 6, "dog": 6, "fox": 6})
    return root
