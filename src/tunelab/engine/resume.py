"""The training state a resume continues from: weights, optimizer, scheduler, early stopping and
every rank's random generators, in one atomic checkpoint (``checkpoints/last.safetensors``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab import checkpoint as ckpt
from tunelab.distributed import Dist
from tunelab.engine.rng import rng_state, set_rng_state
from tunelab.engine.stopping import Stopper


def save_last(ckpt_dir: Path, model: nn.Module, dist: Dist, position: dict[str, Any], opt: torch.optim.Optimizer,
              sched: Any, stopper: Stopper) -> None:
    """Write the state after an epoch (``position``: stage, epoch, stopped). Every rank takes part
    (its generators are gathered); rank 0 writes."""
    ranks = dist.gather_objects(rng_state())  # every rank's generators, so that a resume repeats them
    if not dist.main:
        return
    o_tensors, o_meta = ckpt.optimizer_to_flat(opt)
    r_tensors, r_meta = ranks[0]
    for r, (t, m) in enumerate(ranks[1:], start=1):
        r_tensors.update({f"rank{r}.{k}": v for k, v in t.items()})
        r_meta[f"rank{r}"] = m
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **o_tensors, **r_tensors}
    state = {**position, "stopper": stopper.state(), "optimizer": o_meta, "scheduler": sched.state_dict(), "rng": r_meta}
    ckpt.save(ckpt_dir / "last.safetensors", tensors, state)
    ckpt.atomic_write_text(ckpt_dir / "last.json",
                           json.dumps({k: state[k] for k in ("stage", "epoch", "stopped", "stopper")}, indent=1))


def restore_rng(tensors: dict[str, torch.Tensor], state: dict[str, Any], rank: int) -> None:
    """This rank's generators as the checkpoint saved them (a rank the checkpoint does not know,
    after a resume on more processes, keeps the seed of its own it was given)."""
    if rank == 0:
        set_rng_state(tensors, state["rng"])
    elif f"rank{rank}" in state["rng"]:
        prefix = f"rank{rank}."
        set_rng_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, state["rng"][f"rank{rank}"])
