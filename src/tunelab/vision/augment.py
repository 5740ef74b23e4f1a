"""Training-time augmentation on decoded uint8 images (torchvision.transforms.v2), and Mixup/CutMix.

Presets (register more with ``register_preset``):
  none    nothing
  flip    random horizontal flip
  light   random resized crop (scale 0.5-1) + flip
  medium  light + colour jitter (brightness, contrast, saturation 0.3)
  strong  light + TrivialAugmentWide
or a list of v2 steps: ``[{name: RandomRotation, degrees: 10}, {name: RandomHorizontalFlip}]``.
Each image of a batch gets its own random parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

from tunelab.config import MixupConfig
from tunelab.errors import ConfigError

Preset = Callable[[int], list[Any]]
PRESETS: dict[str, Preset] = {}


def register_preset(name: str, build: Preset) -> None:
    if name in PRESETS:
        raise ValueError(f"an augmentation preset named '{name}' is registered already")
    PRESETS[name] = build


def _light(size: int) -> list[Any]:
    return [v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip()]


register_preset("none", lambda size: [])
register_preset("flip", lambda size: [v2.RandomHorizontalFlip()])
register_preset("light", _light)
register_preset("medium", lambda size: _light(size) + [v2.ColorJitter(0.3, 0.3, 0.3)])
register_preset("strong", lambda size: _light(size) + [v2.TrivialAugmentWide()])


def build_augment(spec: str | list[dict[str, Any]], size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function from a uint8 batch [B, 3, H, W] to an augmented uint8 batch, or None for no-op."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ConfigError(f"regularization.augment: unknown preset '{spec}'; valid: {', '.join(PRESETS)}")
        steps = PRESETS[spec](size)
    else:
        steps = []
        for i, step in enumerate(spec):
            kwargs = {k: v for k, v in step.items() if k != "name"}
            cls = getattr(v2, str(step["name"]), None)
            if not isinstance(cls, type):
                raise ConfigError(
                    f"regularization.augment.{i}: '{step['name']}' is not a torchvision.transforms.v2 "
                    "transform (e.g. RandomRotation, ColorJitter, RandomErasing)"
                )
            try:
                steps.append(cls(**kwargs))
            except TypeError as e:
                raise ConfigError(f"regularization.augment.{i} ({step['name']}): {e}") from None
    if not steps:
        return None
    pipeline = v2.Compose(steps)

    def apply(batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([pipeline(img) for img in batch])

    return apply


class MixTargets:
    """Mixup/CutMix via timm's ``Mixup``; returns mixed float images and soft targets.

    Label smoothing is folded into the soft targets. Batches of odd size are left unmixed (timm
    pairs each image with its mirror in the batch).
    """

    def __init__(self, cfg: MixupConfig, num_classes: int, label_smoothing: float) -> None:
        from timm.data import Mixup

        self.num_classes, self.smoothing = num_classes, label_smoothing
        self.mixup = Mixup(
            mixup_alpha=cfg.mixup_alpha,
            cutmix_alpha=cfg.cutmix_alpha,
            prob=cfg.prob,
            switch_prob=cfg.switch_prob,
            mode="batch",
            label_smoothing=label_smoothing,
            num_classes=num_classes,
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from timm.data.mixup import mixup_target

        x = x.float()
        if len(x) % 2:  # lam = 1: the smoothed one-hot targets timm itself would give
            return x, mixup_target(y, self.num_classes, lam=1.0, smoothing=self.smoothing)
        return self.mixup(x, y)
