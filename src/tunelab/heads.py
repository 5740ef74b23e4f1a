"""The new task head: (spatial dropout) -> pooling -> dropout -> hidden dense layers -> classifier, built from config.
With ``pooling: auto`` (the default) an image backbone pools itself, the way the model does, and the
head starts at the dropout. The pooling of a feature map is the modality's (images:
:func:`tunelab.vision.model.image_head`, timm's adaptive pooling); this module knows no modality.

The two classic fine-tuning heads, as config::

    # GAP -> Dense(1024, relu) -> Dropout(0.5) -> Dense(K)   (softmax is in the loss)
    head: {pooling: avg, hidden: [{units: 1024, activation: relu, dropout: 0.5}]}
    # GAP -> Dropout(0.5) -> Dense(128, relu) -> Dropout(0.5) -> Dense(K)
    head: {pooling: avg, dropout: 0.5, hidden: [{units: 128, dropout: 0.5}]}
"""

from __future__ import annotations

import torch
from torch import nn

from tunelab.config import HeadConfig

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "none": nn.Identity}


class Head(nn.Module):
    """Maps backbone features to class logits. ``pre_logits`` ends at the last hidden layer."""

    def __init__(self, cfg: HeadConfig, in_features: int, num_classes: int, *, pool: nn.Module | None = None) -> None:
        """``pool``: what pools the backbone's feature map, with its output width as a multiple of
        ``in_features`` in ``feat_mult()`` (timm's convention); None when the backbone pooled already
        (token models, image models with their own top)."""
        super().__init__()
        if pool is not None:
            self.spatial_drop: nn.Module = nn.Dropout2d(cfg.spatial_dropout) if cfg.spatial_dropout else nn.Identity()
            self.pool: nn.Module = pool
            width = in_features * int(pool.feat_mult())  # type: ignore[operator]
        else:
            self.spatial_drop = nn.Identity()
            self.pool = nn.Identity()
            width = in_features
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()
        layers: list[nn.Module] = []
        for h in cfg.hidden:
            layers.append(nn.Linear(width, h.units, bias=not h.batch_norm))
            if h.batch_norm:
                layers.append(nn.BatchNorm1d(h.units))
            layers.append(_ACTIVATIONS[h.activation]())
            if h.dropout:
                layers.append(nn.Dropout(h.dropout))
            width = h.units
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)
        # what follows the last linear layer: nothing, or the fixed rescaling of a regression's
        # standardised outputs (tunelab.objectives sets it per problem type)
        self.out: nn.Module = nn.Identity()
        self.num_features = width

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.drop(self.pool(self.spatial_drop(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(self.pre_logits(x)))


class PretrainedHead(Head):
    """The backbone's own pretrained classifier, kept (``num_classes: imagenet``): a head whose
    parts before the classifier are identities (the backbone pools), so the loop, the cache and
    the probe treat it as any other head."""

    def __init__(self, classifier: nn.Module) -> None:
        nn.Module.__init__(self)
        self.spatial_drop, self.pool, self.drop = nn.Identity(), nn.Identity(), nn.Identity()
        self.hidden = nn.Sequential()
        self.fc = classifier  # type: ignore[assignment]  # timm's own classifier, an nn.Linear in most models
        self.out = nn.Identity()
        self.num_features = int(getattr(classifier, "in_features", 0))
