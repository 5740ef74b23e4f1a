"""An image teacher (:mod:`tunelab.distill`) made to read the student's images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.config import Config
from tunelab.vision.config import image_data


class AtSize(nn.Module):
    """An image teacher at the resolution it was trained at: the student's images are resized on
    the way in (a Lite2 teacher trained at 64 px teaching a Lite0 student at 32 px)."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.model(x)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def image_teacher(model: nn.Module, cfg: Config, tcfg: Config, spec: str) -> nn.Module:
    """The teacher run's model on the student's images: resized to the teacher's own resolution
    when the two runs' ``data.image_size`` differ."""
    size = image_data(tcfg).image_size
    return AtSize(model, size) if size != image_data(cfg).image_size else model
