"""What the raw-input baseline of an image run reads: the pixels, area-resized to at most
``PIXEL_SIZE`` (:mod:`tunelab.baselines` fits the logistic regression on them)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.engine.probe import standardise

PIXEL_SIZE = 32  # raw-pixel baseline resolution (area-resized): 3,072 features for colour


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """uint8 [N, C, S, S] -> float [N, C * s * s] in [0, 1], area-resized to at most PIXEL_SIZE."""
    x = images.float() / 255.0
    if x.shape[-1] > PIXEL_SIZE:
        x = F.adaptive_avg_pool2d(x, PIXEL_SIZE)
    if x.shape[1] == 3 and bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all()):
        x = x[:, :1]  # grey images decoded to 3 equal channels: one is enough
    return x.flatten(1).numpy()


def raw_pixels(split: Any, rows: np.ndarray | None = None) -> np.ndarray:
    """The pixel features of an image set's examples (all of them, or ``rows``)."""
    return pixel_features(split.images if rows is None else split.images[torch.from_numpy(rows)])


class PixelInputs:
    """The image baseline's inputs: pixels (at most PIXEL_SIZE a side), standardised for the fit."""

    name = "pixels"

    def inputs(self, split: Any, rows: np.ndarray | None = None) -> np.ndarray:
        return raw_pixels(split, rows)

    def features(self, x: Any) -> tuple[Any, Any]:
        return standardise(x)
