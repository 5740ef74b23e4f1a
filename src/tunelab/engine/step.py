"""One optimisation step, once the batch's data loss is computed: the loss assembled with the
regularization penalties, backpropagated, the optimizer and the schedule stepped."""

from __future__ import annotations

from typing import Any

import torch


def descend(
    opt: torch.optim.Optimizer, sched: Any, data_loss: torch.Tensor, share: float, penalties: list[tuple[str, torch.Tensor]]
) -> tuple[dict[str, float], float, float]:
    """Step on ``data_loss`` weighted by this rank's ``share`` of the batch plus the named
    ``penalties``; returns the step's terms (data loss, each penalty), its whole loss and the
    learning rate it used."""
    values = [v for _, v in penalties]
    loss = data_loss * share + sum(values) if values else data_loss * share
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    lr = opt.param_groups[0]["lr"]
    sched.step()
    terms = {f"penalty_{name}": float(v.detach()) for name, v in penalties}
    terms["loss"] = data_loss.item()
    return terms, loss.item(), lr
