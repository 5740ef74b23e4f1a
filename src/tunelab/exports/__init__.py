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
from typing import Any

from tunelab.api import load_run
from tunelab.card import model_card
from tunelab.checkpoint import follow_umask
from tunelab.errors import ConfigError
from tunelab.exports._graph import graph_metadata, write_onnx, write_torchscript
from tunelab.exports._inference import as_tensors, inference_module, input_names, real_examples
from tunelab.runs import Run
from tunelab.tasks import TASKS, Task, task_for

__all__ = ["Export", "export", "formats"]

log = logging.getLogger("tunelab")

_GRAPH_OUT = {"onnx": "export/model.onnx", "torchscript": "export/model.torchscript.pt"}
_GRAPH_CHECKED_BY = {"onnx": "onnxruntime", "torchscript": "TorchScript"}


def _library_owners() -> dict[str, Task[Any]]:
    """The modalities whose backbone library has a folder format of its own, by that format's name."""
    return {t.library: t for t in TASKS.values() if t.library_export is not None}


def formats() -> list[str]:
    """Every export format: the graph formats, then each modality's library folder (timm, transformers)."""
    return [*_GRAPH_OUT, *_library_owners()]


@dataclass
class Export:
    """Where an export went, and how far its outputs are from the run's PyTorch model on real inputs."""

    path: Path
    format: str
    max_abs_diff: float  # largest |PyTorch - exported| output on the checked examples
    checked: int  # how many examples of the run's data were compared
    seconds: float
    output: str = "logits"  # what the export gives (the objective's): logits, probabilities, values

    checked_by: str = ""  # what ran the export to compare it: onnxruntime, TorchScript, timm, AutoModel

    def describe(self) -> str:
        return (
            f"wrote {self.path} ({self.format}, {self.output}); on {self.checked} real examples, max |PyTorch - "
            f"{self.checked_by}| = {self.max_abs_diff:.2e}"
        )


def _check_format(run: Run, fmt: str) -> None:
    if fmt not in formats():
        raise ConfigError(f"export format '{fmt}' is not known; valid: {', '.join(formats())}")
    # a library's own folder format is for the runs whose backbone comes from that library
    owner, task = _library_owners().get(fmt), task_for(run.config)
    if owner is not None and owner is not task:
        own = f"{task.library}, " if task.library_export is not None else ""
        raise ConfigError(f"--format {fmt} is for {owner.noun} runs; {task.noun} runs export as {own}onnx or torchscript")


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None, *, check: int = 100) -> Export:
    """Export the finished run in ``run_dir`` to ``out`` (default: RUN_DIR/export/...), then compare
    its outputs with the run's PyTorch model on ``check`` examples of the run's test data."""
    t0 = time.perf_counter()
    run = load_run(run_dir)
    _check_format(run, format)
    path = Path(out) if out is not None else Path(run_dir) / _GRAPH_OUT.get(format, f"export/{format}")
    examples = real_examples(run, check)
    inputs = as_tensors(run, examples, check)  # what the graph formats are fed; every format checks this many
    if format in _GRAPH_OUT:
        diff, output = _graph_export(run, Path(run_dir), format, path, inputs), run.objective.exported
        checked_by = _GRAPH_CHECKED_BY[format]
    else:
        folder = _library_owners()[format].library_export
        assert folder is not None
        card = model_card(run_dir, library_name=format, usage=folder.usage(run, str(path)))
        diff, output, checked_by = folder.write(run, path, card, examples, check), run.objective.outputs, folder.checked_by
    follow_umask(path)  # the libraries writing the weights leave them 0600
    result = Export(path, format, diff, len(inputs[0]), time.perf_counter() - t0, output, checked_by)
    log.info(result.describe())
    return result


def _graph_export(run: Run, run_dir: Path, fmt: str, path: Path, inputs: tuple[Any, ...]) -> float:
    """The ONNX or TorchScript file of the run; the largest |PyTorch - exported| output on ``inputs``."""
    graph, output, names = task_for(run.config).graph, run.objective.exported, input_names(run)
    card = model_card(run_dir, library_name="onnx" if fmt == "onnx" else "pytorch", usage=_graph_usage(run, names, fmt))
    meta = graph_metadata(card, run.classes, names, graph.image_size(run.config), run.decoding(output))
    module = inference_module(run)
    if fmt == "onnx":
        return write_onnx(module, inputs, names, path, meta, output, graph.dynamic_dims())
    return write_torchscript(module, inputs, path, meta)


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
        f"Input: {feed}. Output: {run.reading(out)}. Any batch size; `decoding` holds the problem type "
        f"({run.objective.name}) and the names of the outputs.\n\n```python\nimport json\n{code}\n```"
    )
