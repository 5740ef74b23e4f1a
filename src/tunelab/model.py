"""The fine-tuning model: input normalisation -> pretrained backbone -> new head.

Normalisation lives inside the model so that a saved model takes raw 0-255 images and needs no
separate preprocessing recipe at inference time.
"""

from __future__ import annotations

import torch

from tunelab.backbones import Backbone, create_backbone
from tunelab.config import ModelConfig
from tunelab.engine.model import FineTuneModel, run_backbone
from tunelab.heads import Head, PretrainedHead


class TuneModel(FineTuneModel):
    """The image model: normalisation, a timm backbone without its classifier, the new head."""

    backbone: Backbone
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__(backbone, head)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1) * 255, persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float images in [0, 255] -> the backbone's expected input distribution."""
        return (x.float() - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_backbone(self.backbone, self.normalize(x))


def build_image_model(cfg: ModelConfig, num_classes: int) -> TuneModel:
    """Backbone from timm (weights per ``cfg.weights``) plus a head for ``num_classes`` outputs."""
    keep = cfg.num_classes == "imagenet"
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights,
                               keep_classifier=keep, drop_path_rate=cfg.drop_path_rate)
    if keep:
        head: Head = PretrainedHead(backbone.classifier)
        del backbone.classifier
    else:
        head = Head(cfg.head, backbone.num_features, num_classes, feature_map=not backbone.pools)
    return TuneModel(backbone, head)


def place(model: FineTuneModel, device: torch.device | str) -> FineTuneModel:
    """Move to ``device`` in channels_last memory format (faster convolutions on CPU and GPU).

    Training, evaluation and reloading all go through here, so the same inputs give bit-identical
    outputs whichever path built the model.
    """
    return model.to(device=torch.device(device), memory_format=torch.channels_last)  # type: ignore[call-overload]
