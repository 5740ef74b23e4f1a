"""Pretrained backbones: thin adapters around timm models, never re-implementations.

A :class:`Backbone` maps images to features and exposes its layers as named, ordered groups
(from timm's ``group_matcher``), which freezing and the layer table act on::

    bb = create_backbone("tf_efficientnet_lite0", pretrained=True, weights="auto")
    feats = bb(images)            # [B, C, H, W] feature map, or [B, C] for token models
    bb.groups                     # [("stem", [...]), ("blocks.0.0", [...]), ..., ("conv_head", [...])]
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from tunelab.backbones._packaged import PACKAGED, PackagedWeights, register_packaged
from tunelab.errors import ModelError

__all__ = [
    "PACKAGED",
    "Backbone",
    "PackagedWeights",
    "create_backbone",
    "list_backbones",
    "load_state_dict_file",
    "register_packaged",
]


class Backbone(nn.Module):
    """A timm model without its classifier.

    ``pools`` is True when the backbone returns pooled ``[B, C]`` features itself (token models such
    as ViT, or when the pretrained classifier is kept); otherwise it returns the last feature map and
    the head pools.
    """

    model: Any  # a timm model (forward_features, forward_head, get_classifier), not typed by timm
    classifier: nn.Module  # only while create_backbone hands a kept classifier to the head

    def __init__(self, model: Any, *, pools: bool, source: str) -> None:
        super().__init__()
        self.model = model
        self.pools = pools
        self.source = source
        self.num_features: int = int(model.num_features)
        cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std: tuple[float, ...] = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        self.groups = _named_groups(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model.forward_features(x)
        if self.pools:
            x = self.model.forward_head(x, pre_logits=True)
        return x


def _group_name(names: list[str]) -> str:
    """A readable label for a parameter group: the shared module prefix, or its top modules."""
    mods = [n.rsplit(".", 1)[0] for n in names]
    parts = [m.split(".") for m in mods]
    common: list[str] = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if common:
        return ".".join(common)
    def unit(mod: str) -> str:  # leading name plus the indices that follow it: blocks.6.0, layer4.1
        first, *rest = mod.split(".")
        idx = [p for p in rest[: next((i for i, p in enumerate(rest) if not p.isdigit()), len(rest))]]
        return ".".join([first, *idx])

    return "+".join(dict.fromkeys(unit(m) for m in mods))


def _named_groups(model: Any) -> list[tuple[str, list[str]]]:
    """Ordered (label, parameter names) groups, input side first, from timm's fine group_matcher."""
    from timm.models._manipulate import group_parameters

    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, model.group_matcher(coarse=False))
        groups = [list(names) for names in grouped.values()]
    else:  # not a timm model with groups: one group per top-level child
        by_top: dict[str, list[str]] = {}
        for n, _ in model.named_parameters():
            by_top.setdefault(n.split(".")[0], []).append(n)
        groups = list(by_top.values())
    out = [(_group_name(g), g) for g in groups if g]
    if out and not out[0][0].startswith("blocks"):
        out[0] = ("stem", out[0][1]) if len(groups) > 1 else out[0]
    return out


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else "; `tunelab models PATTERN` lists them"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` state dict without unpickling code."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"weights file {p} does not exist")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(p))
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle holding more than tensors
        raise ModelError(f"cannot read weights file {p}: {e}. Valid: a .safetensors file or a "
                         "torch state dict saved with torch.save(model.state_dict())") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ModelError(f"weights file {p} does not hold a state dict")
    return {re.sub(r"^(module\.|backbone\.model\.)", "", k): v for k, v in sd.items()}


def _load_into(model: Any, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load ``sd`` strictly for the feature layers; classifier keys may be absent or differ."""
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    own = model.state_dict()
    clf = model.pretrained_cfg.get("classifier", "classifier") if hasattr(model, "pretrained_cfg") else "classifier"
    clf_prefixes = tuple(f"{c}." for c in ([clf] if isinstance(clf, str) else clf))
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
                  if k in own and own[k].shape != v.shape and not k.startswith(clf_prefixes)]
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked") and not k.startswith(clf_prefixes)]
    unexpected = [k for k in sd if k not in own]
    if mismatched or missing or unexpected:
        def head(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" and {len(xs) - 5} more" if len(xs) > 5 else "")
        msg = [f"weights from {source} do not fit {type(model).__name__}:"]
        if missing:
            msg.append(f"  missing {len(missing)} keys: {head(missing)}")
        if unexpected:
            msg.append(f"  unexpected {len(unexpected)} keys: {head(unexpected)}")
        if mismatched:
            msg.append(f"  shape mismatch: {head(mismatched)}")
        raise ModelError("\n".join(msg))
    keep = {k: v for k, v in sd.items() if not (k.startswith(clf_prefixes) and k in own and own[k].shape != v.shape)}
    model.load_state_dict(keep, strict=False)


def create_backbone(name: str, *, pretrained: bool = True, weights: str = "auto", keep_classifier: bool = False,
                    drop_path_rate: float = 0.0) -> Backbone:
    """Build a timm backbone and load its weights.

    weights: ``auto`` (packaged offline weights when installed, else the hub), ``hub``, ``packaged``,
    or a path to a state dict file. With ``pretrained=False`` the weights are random.
    """
    if name not in timm.list_models():
        raise ModelError(f"backbone '{name}' is not a timm model{_suggest(name)}")
    packaged = PACKAGED.get(name)
    source = "random init"
    if pretrained and weights == "hub":
        source = "hub"
    elif pretrained and weights == "auto":
        source = "packaged" if packaged is not None and packaged.available() else "hub"
    elif pretrained and weights == "packaged":
        if packaged is None:
            raise ModelError(f"no packaged offline weights for '{name}'; packaged: {', '.join(sorted(PACKAGED))}")
        source = "packaged"
    elif pretrained:
        source = str(weights)
    kwargs: dict[str, Any] = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    try:
        model: Any = timm.create_model(name, pretrained=(source == "hub"), **kwargs)
    except Exception as e:
        if source == "hub":
            raise ModelError(
                f"could not download pretrained weights for '{name}' from the hub ({type(e).__name__}: {e}). "
                f"Offline, use model.weights: PATH to a local .safetensors/.pth file"
                + (f", or model.weights: packaged ({packaged.pip_name})" if packaged else "")) from None
        raise
    if source == "packaged":
        assert packaged is not None
        _load_into(model, packaged.load(model), f"package {packaged.pip_name}")
    elif source not in ("hub", "random init"):
        _load_into(model, load_state_dict_file(source), source)

    if keep_classifier:
        classifier = model.get_classifier()
        model.reset_classifier(0)
        bb = Backbone(model, pools=True, source=source)
        bb.classifier = classifier  # taken over by the head
        return bb
    pools = _returns_tokens(model)  # token models pool themselves (cls token / mean of tokens)
    if pools:
        model.reset_classifier(0)
    else:  # CNNs return the feature map; the head pools it
        model.reset_classifier(0, global_pool="")
    return Backbone(model, pools=pools, source=source)


def _returns_tokens(model: Any) -> bool:
    """True when forward_features gives [B, N, C] tokens rather than a [B, C, H, W] map."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = tuple(cfg.get("input_size", (3, 224, 224))) if cfg.get("fixed_input_size") else (3, 64, 64)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        out = model.forward_features(torch.zeros(1, *size))
    model.train(was_training)
    return out.ndim != 4


@dataclass
class BackboneInfo:
    name: str
    offline: str  # "packaged", "cached", or "" when the weights need the hub


def list_backbones(pattern: str = "*", pretrained_only: bool = False) -> list[BackboneInfo]:
    """timm architectures matching ``pattern`` and whether their weights are usable offline now."""
    names = timm.list_pretrained(pattern) if pretrained_only else timm.list_models(pattern)
    out = []
    for n in names:
        arch = n.split(".")[0]
        pk = PACKAGED.get(arch)
        if pk is not None and pk.available():
            status = "packaged"
        elif _in_hub_cache(n):
            status = "cached"
        else:
            status = ""
        out.append(BackboneInfo(n, status))
    return out


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(name)
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not repo:
            return False
        return any(isinstance(try_to_load_from_cache(repo, f), str)
                   for f in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))
    except Exception:
        return False
