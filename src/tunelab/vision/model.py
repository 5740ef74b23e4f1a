"""The fine-tuning model: input normalisation -> pretrained backbone -> new head.

Normalisation lives inside the model so that a saved model takes raw 0-255 images and needs no
separate preprocessing recipe at inference time.
"""

from __future__ import annotations

import logging

import torch
from timm.layers import DropPath, SelectAdaptivePool2d
from torch import nn

from tunelab.config import HeadConfig, ModelConfig
from tunelab.engine.model import FineTuneModel, run_backbone
from tunelab.errors import ModelError
from tunelab.heads import Head, PretrainedHead
from tunelab.vision.backbones import Backbone, create_backbone
from tunelab.vision.backbones.sequence import backbone_sequence

log = logging.getLogger("tunelab")


class TuneModel(FineTuneModel):
    """The image model: normalisation, a timm backbone without its classifier, the new head."""

    backbone: Backbone
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__(backbone, head)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1) * 255, persistent=False)

    def compile_blocks(self) -> int:
        """Block by block, so the cached paths (which run a stage's trainable tail block by block) use
        the compiled code too, and parameter names stay as they are (checkpoints are unchanged)."""
        seq = backbone_sequence(self.backbone)
        blocks = [m for _, m in seq] if seq is not None else [self.backbone]
        for m in blocks:
            m.compile()
        self.head.compile()
        return len(blocks)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float images in [0, 255] -> the backbone's expected input distribution."""
        return (x.float() - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_backbone(self.backbone, self.normalize(x))

    def drop_paths(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, DropPath)]


def build_image_model(cfg: ModelConfig, num_classes: int, *, image_size: int | None = None) -> TuneModel:
    """Backbone from timm (weights per ``cfg.weights``) for ``image_size`` images plus a head for
    ``num_classes`` outputs. The head reads the model's own pre-logits features unless the config
    asks for tunelab's pooling or spatial dropout, which work on the last feature map."""
    keep = cfg.num_classes == "imagenet"
    own_top = keep or (cfg.head.pooling == "auto" and not cfg.head.spatial_dropout)
    backbone = create_backbone(
        cfg.backbone,
        pretrained=cfg.pretrained,
        weights=cfg.weights,
        keep_classifier=keep,
        drop_path_rate=cfg.drop_path_rate,
        feature_map=not own_top,
        image_size=image_size,
        timm_kwargs=cfg.timm_kwargs,
    )
    if backbone.left_out:
        _explain_left_out(cfg, backbone)
    if keep:
        head: Head = PretrainedHead(backbone.classifier)
        del backbone.classifier
    else:
        head = image_head(cfg.head, backbone.num_features, num_classes, feature_map=not backbone.pools)
    return TuneModel(backbone, head)


def image_head(cfg: HeadConfig, in_features: int, num_classes: int, *, feature_map: bool) -> Head:
    """The configured head on an image backbone's output: on a feature map (``feature_map``), it
    pools with timm's adaptive pooling (``pooling: auto`` averages), else it starts at the dropout."""
    if not feature_map:
        return Head(cfg, in_features, num_classes)
    pool_type = "avg" if cfg.pooling == "auto" else cfg.pooling
    return Head(cfg, in_features, num_classes, pool=SelectAdaptivePool2d(pool_type=pool_type, flatten=True))


def _explain_left_out(cfg: ModelConfig, backbone: Backbone) -> None:
    """Say what of the model never runs (so is not in the model); refuse to drop a pretrained top
    silently for spatial dropout, which the user may not know needs the bare feature map."""
    parts = ", ".join(f"{name} ({n:,} parameters)" for name, n in backbone.left_out)
    if backbone.pools:
        log.info("%s: left out what never runs: %s", cfg.backbone, parts)
    elif cfg.head.pooling == "auto":
        raise ModelError(
            f"model.head.spatial_dropout drops channels of the feature map before tunelab's pooling, "
            f"which would leave out {cfg.backbone}'s own top: {parts}. Set model.head.pooling (avg, "
            "max, ...) to pool the feature map that way, or set spatial_dropout: 0"
        )
    else:
        log.info(
            "model.head.pooling: %s pools %s's feature map; its own top is left out: %s", cfg.head.pooling, cfg.backbone, parts
        )
