"""Where and how forward passes run: the device, bf16 autocast, channels_last, batched inference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tunelab.distributed import Dist
from tunelab.engine.model import FineTuneModel
from tunelab.errors import ConfigError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: cuda was asked for but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def autocast_bf16(precision: str, device: torch.device) -> bool:
    """Whether run.precision asks for bf16 autocast on this device (auto: CUDA GPUs with bf16 only)."""
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return precision == "bf16"


def place(model: FineTuneModel, device: torch.device | str) -> FineTuneModel:
    """Move to ``device`` in channels_last memory format (faster convolutions on CPU and GPU).

    Training, evaluation and reloading all go through here, so the same inputs give bit-identical
    outputs whichever path built the model.
    """
    return model.to(device=torch.device(device), memory_format=torch.channels_last)  # type: ignore[call-overload]


@torch.inference_mode()
def predict_logits(
    model: FineTuneModel, images: torch.Tensor, batch_size: int, device: torch.device, bf16: bool = False
) -> torch.Tensor:
    """Logits for a modality's inputs (uint8 images, tokens), in eval mode, batch by batch, in the
    order the model asks for (:meth:`FineTuneModel.eval_order`); returned on the CPU in input order."""
    was_training = model.training
    model.eval()
    out = []
    order = model.eval_order(images)  # the modality's batching order (texts: by length, so that a batch pads little)
    for i in range(0, len(images), batch_size):
        x = (images[i : i + batch_size] if order is None else images[order[i : i + batch_size]]).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model(to_memory_format(x)).float().cpu())
    model.train(was_training)
    logits = torch.cat(out) if out else torch.empty(0, 0)
    return logits if order is None else logits[torch.argsort(order)]


def to_memory_format(x: Any) -> Any:
    return x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.ndim == 4 else x


def gather_logits(dist: Dist, n: int, batch_size: int, width: int, logits_of: Callable[[slice], torch.Tensor]) -> torch.Tensor:
    """Logits of rows 0..n-1 on every rank: each rank computes its share (whole batches) with
    ``logits_of``, then all shares are gathered in order."""
    rows = dist.shard(n, batch_size)
    mine = logits_of(slice(rows.start, rows.stop)) if len(rows) else torch.empty(0, width)
    return dist.gather_rows(mine)


def tail_logits(
    model: FineTuneModel,
    forward: Callable[[Any], torch.Tensor],
    feats: Any,
    rows: slice,
    batch_size: int,
    device: torch.device,
    bf16: bool,
) -> torch.Tensor:
    """Logits of ``forward`` (a stage's trainable tail) on cached prefix outputs ``feats[rows]``,
    batch by batch, in eval mode (the model's mode is restored after)."""
    was = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = torch.cat(
            [forward(feats[i : min(i + batch_size, rows.stop)]).float().cpu() for i in range(rows.start, rows.stop, batch_size)]
        )
    model.train(was)
    return logits
