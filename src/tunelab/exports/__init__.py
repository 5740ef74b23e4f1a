"""``tunelab export``: a finished run's whole inference model in a format that runs without
tunelab, checked against PyTorch on real inputs of the run's data.

    result = tunelab.export("runs/demo", "onnx")     # runs/demo/export/model.onnx
    result.max_abs_diff                              # largest |PyTorch - onnxruntime| output

Formats: ``onnx`` (dynamo exporter; onnxruntime checks it), ``torchscript`` (a trace), both taking
raw uint8 images [B, 3, S, S] (texts: input_ids and attention_mask [B, L]) with a dynamic batch
size and the normalisation inside, and giving what the run's objective exports (class logits,
label probabilities, values in the target's units); ``timm`` (image runs: a folder plain
``timm.create_model`` loads) and ``transformers`` (text runs: a folder ``AutoModel`` loads, plus
the head), whose last linear layer gives logits or values. Every export carries the run's model
card and ``decoding.json`` (the problem type, the names, a multi-label run's thresholds; see
docs/export.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunelab.api import load_run
from tunelab.card import model_card
from tunelab.checkpoint import follow_umask
from tunelab.errors import ConfigError
from tunelab.exports._graph import graph_metadata, write_onnx, write_torchscript
from tunelab.exports._inference import as_tensors, decoding, inference_module, input_names, reading, real_examples
from tunelab.exports._timm import timm_usage, write_timm
from tunelab.exports._transformers import snippet_logits, transformers_usage, write_transformers
from tunelab.runs import Run
from tunelab.tasks import TASKS, task_for

__all__ = ["FORMATS", "Export", "export"]

log = logging.getLogger("tunelab")

FORMATS = ("onnx", "torchscript", "timm", "transformers")
_DEFAULT_OUT = {
    "onnx": "export/model.onnx",
    "torchscript": "export/model.torchscript.pt",
    "timm": "export/timm",
    "transformers": "export/transformers",
}
_CHECKED_BY = {"onnx": "onnxruntime", "torchscript": "TorchScript", "timm": "timm", "transformers": "AutoModel"}


@dataclass
class Export:
    """Where an export went, and how far its outputs are from the run's PyTorch model on real inputs."""

    path: Path
    format: str
    max_abs_diff: float  # largest |PyTorch - exported| output on the checked examples
    checked: int  # how many examples of the run's data were compared
    seconds: float
    output: str = "logits"  # what the export gives (the objective's): logits, probabilities, values

    def describe(self) -> str:
        return (
            f"wrote {self.path} ({self.format}, {self.output}); on {self.checked} real examples, max |PyTorch - "
            f"{_CHECKED_BY[self.format]}| = {self.max_abs_diff:.2e}"
        )


def _check_format(run: Run, fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"export format '{fmt}' is not known; valid: {', '.join(FORMATS)}")
    # a library's own folder format is for the runs whose backbone comes from that library
    owner = next((t for t in TASKS.values() if t.library == fmt), None)
    task = task_for(run.config)
    if owner is not None and owner is not task:
        raise ConfigError(
            f"--format {fmt} is for {owner.noun} runs; {task.noun} runs export as {task.library}, onnx or torchscript"
        )


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, *, check: int = 100) -> Export:
    """Export the finished run in ``run_dir`` to ``out`` (default: RUN_DIR/export/...), then compare
    its outputs with the run's PyTorch model on ``check`` examples of the run's test data."""
    t0 = time.perf_counter()
    run = load_run(run_dir)
    _check_format(run, format)
    path = Path(out) if out is not None else Path(run_dir) / _DEFAULT_OUT[format]
    examples = real_examples(run, check)
    inputs = as_tensors(run, examples, check)
    output = run.objective.exported if format in ("onnx", "torchscript") else run.objective.outputs
    if format in ("onnx", "torchscript"):
        names = input_names(run)
        card = model_card(run_dir, library_name="onnx" if format == "onnx" else "pytorch", usage=_graph_usage(run, names, format))
        meta = graph_metadata(card, run.classes, names, task_for(run.config).graph.image_size(run.config), decoding(run, output))
        module = inference_module(run)
        if format == "onnx":
            diff = write_onnx(module, inputs, names, path, meta, output)
        else:
            diff = write_torchscript(module, inputs, path, meta)
    elif format == "timm":
        diff = write_timm(run, path, model_card(run_dir, library_name="timm", usage=timm_usage(run, str(path))), inputs[0])
    else:
        card = model_card(run_dir, library_name="transformers", usage=transformers_usage(run, str(path)))
        write_transformers(run, path, card)
        diff = _transformers_difference(run, path, examples, check)
    follow_umask(path)  # the libraries writing the weights leave them 0600
    result = Export(path, format, diff, len(inputs[0]), time.perf_counter() - t0, output)
    log.info(result.describe())
    return result


def _transformers_difference(run: Run, path: Path, examples: object, n: int) -> float:
    """The documented lines on the examples' texts against the run's model on the same tokens."""
    texts = list(getattr(examples, "texts"))[:n]  # noqa: B009 (a text set)
    ours = inference_module(run, exported=False)(*as_tensors(run, examples, n)).detach().numpy()
    return float(np.abs(snippet_logits(run, path, texts).numpy() - ours).max())


def _graph_usage(run: Run, names: list[str], fmt: str) -> str:
    feed = task_for(run.config).graph.feed(run.config, names)
    out = run.objective.exported
    if fmt == "onnx":
        code = (
            'import onnxruntime as ort\n\nsession = ort.InferenceSession("model.onnx")\n'
            f"{out} = session.run(None, {{{', '.join(f'{n!r}: {n}' for n in names)}}})[0]\n"
            "meta = session.get_modelmeta().custom_metadata_map\n"
            'classes, decoding = json.loads(meta["classes.json"]), json.loads(meta["decoding.json"])'
        )
    else:
        code = (
            'import torch\n\nextra = {"classes.json": "", "decoding.json": ""}\nmodel = torch.jit.load("model.torchscript.pt", '
            f"_extra_files=extra)\n{out} = model({', '.join(names)})\n"
            'classes, decoding = json.loads(extra["classes.json"]), json.loads(extra["decoding.json"])'
        )
    return (
        f"Input: {feed}. Output: {reading(run, out)}. Any batch size; `decoding` holds the problem type "
        f"({run.objective.name}) and the names of the outputs.\n\n```python\nimport json\n{code}\n```"
    )
