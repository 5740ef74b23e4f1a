"""The graph formats: ONNX (torch.onnx's dynamo exporter, checked in onnxruntime) and TorchScript
(a trace, checked in PyTorch). Both take a dynamic batch (texts: and a dynamic length) and carry
the model card, the class names, the input names and how to decode the outputs (``decoding.json``:
the problem type, the names, the thresholds) inside the file."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tunelab import checkpoint as ckpt
from tunelab.checkpoint import atomic_write_bytes
from tunelab.errors import ModelError

log = logging.getLogger("tunelab")


@torch.inference_mode()
def _reference(module: nn.Module, inputs: tuple[torch.Tensor, ...], batch: int = 32) -> np.ndarray:
    """PyTorch's fp32 outputs of ``inputs``, batch by batch."""
    n = len(inputs[0])
    return torch.cat([module(*(x[i : i + batch] for x in inputs)) for i in range(0, n, batch)]).numpy()


_LIMITS = {"batch": (1, 65536)}  # the sizes a dynamic dimension may take; others (a text's length): 2 to 8192


def _dynamic_shapes(names: list[str], dims: dict[int, str]) -> tuple[dict[int, torch.export.Dim], ...]:
    """Every input's varying dimensions (the modality's ``dynamic_dims``: the batch, a text's length),
    by position: the wrapped model's argument names need not be the inputs' names."""
    shared = {}
    for label in dims.values():
        low, high = _LIMITS.get(label, (2, 8192))
        shared[label] = torch.export.Dim(label, min=low, max=high)
    return tuple({axis: shared[label] for axis, label in dims.items()} for _ in names)


def write_onnx(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    names: list[str],
    path: Path,
    metadata: dict[str, str],
    output: str,
    dims: dict[int, str],
) -> float:
    """Export ``module`` to ONNX at ``path`` with ``metadata`` in its properties, its output named
    ``output`` and the dimensions ``dims`` of every input dynamic; returns the largest
    |PyTorch - onnxruntime| on ``inputs``."""
    try:
        import onnx
        import onnxruntime as ort
        import onnxscript  # noqa: F401 (what torch.onnx's dynamo exporter writes the graph with)
    except ImportError as e:
        raise ModelError(f"--format onnx needs onnx, onnxruntime and onnxscript ({e}): pip install 'tunelab[export]'") from None
    example = tuple(x[:2] for x in inputs)  # two rows: a batch of 1 would be specialised by the tracer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                input_names=names,
                output_names=[output],
                dynamic_shapes=_dynamic_shapes(names, dims),
                verbose=False,
            )
        except Exception as e:  # the exporter's own message says which operator or shape failed
            raise ModelError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    assert program is not None
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata)
    atomic_write_bytes(path, proto.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate(
        [session.run(None, {n: x[i : i + 32].numpy() for n, x in zip(names, inputs)})[0] for i in range(0, len(inputs[0]), 32)]
    )
    return float(np.abs(got - _reference(module, inputs)).max())


def write_torchscript(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, metadata: dict[str, str]) -> float:
    """Trace ``module`` to TorchScript at ``path`` (``metadata`` as extra files); returns the largest
    |eager - TorchScript| on ``inputs``, run in batches of another size than the trace's."""
    example = tuple(x[:2] for x in inputs)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = ckpt.temp_file(path)  # a name of its own: two exports to one folder never share one
        os.close(fd)
        try:
            torch.jit.save(traced, tmp, _extra_files=metadata)  # deprecated in favour of torch.export, still served
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        loaded = torch.jit.load(str(path))
    return float(np.abs(_reference(loaded, inputs, batch=7) - _reference(module, inputs)).max())


def graph_metadata(
    card: str, classes: list[str], names: list[str], image_size: int | None, decoding: dict[str, Any]
) -> dict[str, str]:
    """What an ONNX or TorchScript file carries besides the graph: the card, how to feed it and how
    to read what it gives."""
    meta = {
        "README.md": card,
        "classes.json": json.dumps(classes),
        "inputs.json": json.dumps(names),
        "decoding.json": json.dumps(decoding),
    }
    if image_size is not None:
        meta["image_size"] = str(image_size)
    return meta
