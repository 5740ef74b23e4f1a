"""Reading a state dict file and loading it into a timm model, strictly for the feature layers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from tunelab.errors import ModelError


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
        raise ModelError(
            f"cannot read weights file {p}: {e}. Valid: a .safetensors file or a "
            "torch state dict saved with torch.save(model.state_dict())"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ModelError(f"weights file {p} does not hold a state dict")
    return {re.sub(r"^(module\.|backbone\.model\.)", "", k): v for k, v in sd.items()}


def load_into(model: Any, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load ``sd`` strictly for the feature layers; classifier keys may be absent or differ."""
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    own = model.state_dict()
    clf = model.pretrained_cfg.get("classifier", "classifier") if hasattr(model, "pretrained_cfg") else "classifier"
    clf_prefixes = tuple(f"{c}." for c in ([clf] if isinstance(clf, str) else clf))
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and own[k].shape != v.shape and not k.startswith(clf_prefixes)
    ]
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
