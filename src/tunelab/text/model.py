"""The text fine-tuning model: tokens -> pretrained encoder + pooling -> the configurable head.

It answers the same questions as the image model (``groups()``, ``head``, ``backbone``), so
freezing, layer-wise lr decay, penalties, the audit and the layer table work unchanged::

    model = build_text_model(ModelConfig(backbone="minilm", family="transformers"), num_classes=2)
    [g for g, _ in model.groups()]   # backbone.embeddings, backbone.layers.0 ... backbone.layers.5, head.fc
"""

from __future__ import annotations

from typing import Any

import torch

from tunelab.config import ModelConfig
from tunelab.engine.model import FineTuneModel
from tunelab.errors import ConfigError
from tunelab.heads import Head
from tunelab.text.backbone import TextBackbone, create_text_backbone
from tunelab.text.lexical import LexicalBlend


class TextModel(FineTuneModel):
    """The text model: a transformers encoder with pooling (tokens in, one vector per text out),
    then the new head; after training, maybe a lexical blend (:mod:`tunelab.text.lexical`)."""

    backbone: TextBackbone
    lexical: LexicalBlend | None

    def __init__(self, backbone: TextBackbone, head: Head) -> None:
        super().__init__(backbone, head)
        self.lexical = None

    def forward(self, x: Any) -> torch.Tensor:
        logits = self.head(self.forward_features(x))
        return logits if self.lexical is None else self.lexical.blend(logits, x)

    def eval_order(self, inputs: Any) -> torch.Tensor:
        return inputs.eval_order()  # shortest texts first (Tokens.eval_order)

    def vocab_size(self) -> int:
        return int(self.backbone.model.get_input_embeddings().num_embeddings)


def build_text_model(cfg: ModelConfig, num_classes: int) -> TextModel:
    """A transformers encoder (weights per ``cfg.weights``) with pooling and a head for ``num_classes``."""
    if cfg.num_classes == "imagenet":
        raise ConfigError("model.num_classes: imagenet keeps an ImageNet classifier; text models need 'data' or a number")
    if cfg.drop_path_rate:
        raise ConfigError("model.drop_path_rate is for timm image backbones; text encoders use their own dropout")
    backbone = create_text_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights, pooling=cfg.head.pooling)
    head = Head(cfg.head, backbone.num_features, num_classes)
    model = TextModel(backbone, head)
    if isinstance(cfg.lexical, float) and cfg.lexical > 0:  # a trained run's blend: its weights come with the run's
        model.lexical = LexicalBlend(model.vocab_size(), num_classes)
    return model
