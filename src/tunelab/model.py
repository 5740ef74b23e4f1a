"""The fine-tuning model: input normalisation -> pretrained backbone -> new head.

Normalisation lives inside the model so that a saved model takes raw 0-255 images and needs no
separate preprocessing recipe at inference time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunelab.backbones import Backbone, create_backbone
from tunelab.config import ModelConfig
from tunelab.heads import Head, PretrainedHead


class TuneModel(nn.Module):
    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1) * 255, persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float images in [0, 255] -> the backbone's expected input distribution."""
        return (x.float() - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_backbone(self.backbone, self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def groups(self) -> list[tuple[str, list[str]]]:
        """Ordered named parameter groups of the whole model, input side first, head last."""
        return named_groups(self.backbone, self.head)


def run_backbone(backbone: nn.Module, x: Any) -> torch.Tensor:
    """The backbone on ``x``; without an autograd graph when none of it trains."""
    if not any(p.requires_grad for p in backbone.parameters()):
        with torch.no_grad():
            return backbone(x)
    return backbone(x)


def named_groups(backbone: nn.Module, head: nn.Module) -> list[tuple[str, list[str]]]:
    """The backbone's named groups (``backbone.groups``) then one group per head module with
    parameters, as (label, parameter names of the whole model)."""
    out = [(f"backbone.{label}", [f"backbone.model.{n}" for n in names]) for label, names in backbone.groups]
    for child, module in head.named_children():
        names = [f"head.{child}.{n}" for n, _ in module.named_parameters()]
        if names:
            out.append((f"head.{child}", names))
    return out


def build_model(cfg: ModelConfig, num_classes: int) -> TuneModel:
    """Backbone from timm (weights per ``cfg.weights``) plus a head for ``num_classes`` outputs; with
    ``family: transformers`` a text encoder instead (:mod:`tunelab.text.model`)."""
    if cfg.family == "transformers":
        from tunelab.text.model import build_text_model

        return build_text_model(cfg, num_classes)  # type: ignore[return-value]
    keep = cfg.num_classes == "imagenet"
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights,
                               keep_classifier=keep, drop_path_rate=cfg.drop_path_rate)
    if keep:
        head: nn.Module = PretrainedHead(backbone.classifier)
        del backbone.classifier
    else:
        head = Head(cfg.head, backbone.num_features, num_classes, feature_map=not backbone.pools)
    return TuneModel(backbone, head)


def place(model: TuneModel, device: torch.device | str) -> TuneModel:
    """Move to ``device`` in channels_last memory format (faster convolutions on CPU and GPU).

    Training, evaluation and reloading all go through here, so the same inputs give bit-identical
    outputs whichever path built the model.
    """
    return model.to(device=torch.device(device), memory_format=torch.channels_last)
