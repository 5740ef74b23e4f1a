"""The training state a resume continues from: weights, optimizer, scheduler, early stopping and
every rank's random generators, in one atomic checkpoint (``checkpoints/last.safetensors``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab import checkpoint as ckpt
from tunelab.distributed import Dist
from tunelab.engine.rng import rng_state, set_rng_state
from tunelab.engine.stopping import Stopper
from tunelab.errors import ModelError, RunError

log = logging.getLogger("tunelab")


@dataclass
class Position:
    """Where a resumed run continues: the stage and the last completed epoch in it."""

    stage: int = 0
    epoch: int = -1
    stopped: bool = False
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


STATE_KEYS = ("stage", "epoch", "stopped", "stopper", "optimizer", "scheduler", "rng")


def position_from_state(tensors: dict[str, torch.Tensor], state: dict[str, Any], epochs: list[int], source: str) -> Position:
    """The position a checkpoint's state (from :func:`save_last`) records, checked against the
    config's stages (``epochs`` per stage): a state edited by hand or written for another config is
    refused with the key named, never silently skipped or repeated."""
    missing = [k for k in STATE_KEYS if k not in state]
    problem = f"has no {', '.join(repr(k) for k in missing)}" if missing else _position_problem(state, epochs)
    if problem:
        raise ModelError(
            f"{source}: the saved training state {problem}; the checkpoint was edited or written by "
            "another program, or the run's config.yaml was edited (then put its values back, or start a "
            f"new run from it: `tunelab fit {Path(source).parents[1]}/config.yaml --set run.name=NEW`). "
            "Otherwise delete "
            "the checkpoints folder to train the run again from the start"
        )
    return Position(state["stage"], state["epoch"], state["stopped"], tensors, state)


def _position_problem(state: dict[str, Any], epochs: list[int]) -> str | None:
    stage, epoch = state["stage"], state["epoch"]
    if type(stage) is not int or not 0 <= stage < len(epochs):
        return f"has stage {stage!r}; the config has stages 0 to {len(epochs) - 1}"
    if type(epoch) is not int or not 0 <= epoch < epochs[stage]:
        return f"has epoch {epoch!r}; stage {stage} of the config has epochs 0 to {epochs[stage] - 1}"
    if not isinstance(state["stopped"], bool):
        return f"has stopped {state['stopped']!r}; valid: true or false"
    return None


def save_last(
    ckpt_dir: Path,
    model: nn.Module,
    dist: Dist,
    position: dict[str, Any],
    opt: torch.optim.Optimizer,
    sched: Any,
    stopper: Stopper,
) -> None:
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
    ckpt.atomic_write_text(
        ckpt_dir / "last.json", json.dumps({k: state[k] for k in ("stage", "epoch", "stopped", "stopper")}, indent=1)
    )


def restore_rng(tensors: dict[str, torch.Tensor], state: dict[str, Any], rank: int) -> None:
    """This rank's generators as the checkpoint saved them (a rank the checkpoint does not know,
    after a resume on more processes, keeps the seed of its own it was given)."""
    if rank == 0:
        set_rng_state(tensors, state["rng"])
    elif f"rank{rank}" in state["rng"]:
        prefix = f"rank{rank}."
        set_rng_state({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, state["rng"][f"rank{rank}"])


def resume_stage(pos: Position, si: int, opt: torch.optim.Optimizer, sched: Any, stopper: Stopper, rank: int) -> tuple[int, bool]:
    """The first epoch stage ``si`` runs and whether it had stopped early: (0, False), or, when the
    run resumes inside this stage, the saved optimizer, schedule, early stopping and generators
    restored and the epoch after the saved one."""
    if pos.stage != si or pos.epoch < 0:
        return 0, False
    ckpt.optimizer_from_flat(opt, pos.tensors, pos.state["optimizer"])
    sched.load_state_dict(pos.state["scheduler"])
    stopper.load(pos.state["stopper"])
    restore_rng(pos.tensors, pos.state, rank)
    log.info("resuming stage %d at epoch %d", si + 1, pos.epoch + 2)
    return pos.epoch + 1, pos.stopped


def save_best(
    ckpt_dir: Path, model: nn.Module, dist: Dist, si: int, epoch: int, stopper: Stopper, run_id: str | None = None
) -> None:
    if dist.main:
        ckpt.save(
            ckpt_dir / "best.safetensors",
            model.state_dict(),
            {"stage": si, "epoch": epoch, "metric": stopper.metric, "value": stopper.best, "run_id": run_id},
        )


def restore_best(ckpt_dir: Path, model: nn.Module, dist: Dist, si: int, stopper: Stopper, run_id: str | None = None) -> None:
    """The stage's best weights back into ``model`` (early stopping's ``restore_best``); a file another
    run wrote (its run id in the state) is refused."""
    dist.barrier()  # rank 0 has written the file
    path = ckpt_dir / "best.safetensors"
    tensors, state = ckpt.load(path)
    if run_id and state.get("run_id") and state["run_id"] != run_id:
        raise RunError(
            f"{path} belongs to another run (run id {state['run_id']}; this run's is {run_id}): it was "
            f"copied from another run folder. Put this run's own file back, or delete {ckpt_dir} to train "
            "the run again from the start"
        )
    model.load_state_dict(tensors)
    log.info(
        "restored the best weights of stage %d (epoch %d, %s %.4f)", si + 1, stopper.best_epoch + 1, stopper.metric, stopper.best
    )
