"""What a backbone runs. One pass at the working input size checks that the model takes that size
before anything trains, and finds the modules it never runs (a VGG's ``pre_logits`` when tunelab
pools the feature map itself), which are then left out: only parameters that run can be trained,
and the layer table counts only those."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tunelab.errors import ModelError


def probe_images(size: tuple[int, int], n: int = 1) -> torch.Tensor:
    """``n`` fixed random images of ``size`` (already normalised: the backbone's input)."""
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(0))


def check_input_size(
    model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], name: str, size: tuple[int, int], hint: str
) -> torch.Tensor:
    """``forward`` on a probe image of ``size`` with ``model`` in eval mode; a clear error when the
    model cannot take that size."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return forward(probe_images(size))
    except Exception as e:  # timm asserts the input size, or a feature map shrinks below a kernel
        raise ModelError(
            f"backbone '{name}' cannot run on {size[0]}x{size[1]} images ({type(e).__name__}: {e}); {hint}"
        ) from None
    finally:
        model.train(was)


def leave_out_unused(
    model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], size: tuple[int, int]
) -> list[tuple[str, int]]:
    """Replace by identities the modules of ``model`` that ``forward`` never calls and whose
    parameters it never uses; a parameter unused inside a module that runs becomes a buffer.
    Returns (name, parameter count) of everything left out. ``model`` is in eval mode here (what
    runs at test time; dropout and drop-path never skip a module for good)."""
    ran: set[int] = set()
    handles = [m.register_forward_pre_hook(lambda mod, args: ran.add(id(mod))) for m in model.modules()]
    was = model.training
    model.eval()
    try:
        out = forward(probe_images(size))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.float().sum(), params, allow_unused=True) if out.requires_grad else [None] * len(params)
    unused = {id(p) for p, g in zip(params, grads) if g is None}
    left: list[tuple[str, int]] = []
    for name, mod in list(model.named_modules()):
        ps = list(mod.parameters())
        if not name or id(mod) in ran or not ps or any(id(p) not in unused for p in ps):
            continue
        if any(name.startswith(f"{done}.") for done, _ in left):
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, nn.Identity())
        left.append((name, sum(p.numel() for p in ps)))
    for name, p in list(model.named_parameters()):
        if id(p) in unused:  # its module runs, but not through this parameter: kept, never trained
            owner, _, attr = name.rpartition(".")
            mod = model.get_submodule(owner)
            delattr(mod, attr)
            mod.register_buffer(attr, p.detach())
            left.append((name, p.numel()))
    return left
