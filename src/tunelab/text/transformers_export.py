"""The ``transformers`` format of a text run: the fine-tuned encoder and its tokenizer as a folder
``AutoModel`` / ``AutoTokenizer`` load, and the head (``head.safetensors``: its linear layer) that a
few lines of plain PyTorch apply to the pooled encoder output (the lines are in the folder's
README.md, and in docs/export.md). The head's linear layer has what the objective applies after
it folded in (a regression's rescaling to the target's units); the encoder's config names the
``problem_type`` as transformers does, and ``decoding.json`` says how to read the outputs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from tunelab.checkpoint import atomic_write_text
from tunelab.errors import ModelError
from tunelab.runs import Run
from tunelab.text._encoders import load_tokenizer
from tunelab.text.config import text_options
from tunelab.text.export import TextGraph

# the pooled features from the encoder's last hidden states ``h`` and the attention mask ``m``
# ([B, L, 1], float), as the run's backbone computes them
POOLING = {
    "auto": "feats = (h * m).sum(1) / m.sum(1)",
    "mean": "feats = (h * m).sum(1) / m.sum(1)",
    "avg": "feats = (h * m).sum(1) / m.sum(1)",
    "cls": "feats = h[:, 0]",
    "max": "feats = h.masked_fill(m == 0, torch.finfo(h.dtype).min).amax(1)",
}


def _check(run: Run) -> str:
    head = run.config.model.head
    if head.hidden:
        raise ModelError(
            f"--format transformers: the run's head has hidden layers ({len(head.hidden)}); the few "
            "plain lines apply one linear layer. Export it as onnx or torchscript instead"
        )
    if getattr(run.model, "lexical", None) is not None:
        raise ModelError(
            f"--format transformers: the run blends word counts into its predictions (model.lexical: "
            f"{run.config.model.lexical}), which the plain lines do not apply; export it as onnx or "
            "torchscript (the blend is inside), or train with --set model.lexical=null"
        )
    if head.pooling not in POOLING:
        raise ModelError(
            f"--format transformers: pooling {head.pooling} is not written out as plain lines (valid: "
            f"{', '.join(POOLING)}); export it as onnx or torchscript instead"
        )
    return POOLING[head.pooling]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars or load reports of transformers in tunelab's output."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def write_transformers(run: Run, folder: Path, card: str) -> None:
    """Write the encoder, the tokenizer, head.safetensors, tunelab_head.json, decoding.json and README.md."""
    _check(run)
    cfg = run.config
    encoder: Any = getattr(run.model.backbone, "model", None)
    if encoder is None or not hasattr(encoder, "save_pretrained"):
        raise ModelError("--format transformers: the run's backbone holds no transformers model")
    encoder.config.id2label = dict(enumerate(run.classes))
    encoder.config.label2id = {c: i for i, c in enumerate(run.classes)}
    encoder.config.problem_type = run.objective.problem_type
    with _quiet():
        encoder.save_pretrained(folder)
    load_tokenizer(text_options(cfg).tokenizer or cfg.model.backbone, cfg.model.weights).save_pretrained(folder)
    fc = run.model.head.fc
    weight, bias = run.objective.fold(fc.weight.detach(), fc.bias.detach())
    save_file({"fc.weight": weight.contiguous(), "fc.bias": bias.contiguous()}, str(folder / "head.safetensors"))
    meta = {"classes": run.classes, "pooling": cfg.model.head.pooling, "max_length": text_options(cfg).max_length}
    atomic_write_text(folder / "tunelab_head.json", json.dumps(meta, indent=1))
    atomic_write_text(folder / "decoding.json", json.dumps(run.decoding(run.objective.outputs), indent=1))
    atomic_write_text(folder / "README.md", card)


def transformers_snippet(run: Run, folder: str) -> str:
    """The plain lines that turn texts into the run's outputs (logits, values) with the exported folder."""
    return f"""import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

folder = "{folder}"
tokenizer, encoder = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
head = load_file(f"{{folder}}/head.safetensors")
batch = tokenizer(texts, padding=True, truncation=True, max_length={text_options(run.config).max_length}, return_tensors="pt")
with torch.no_grad():
    h = encoder(**batch).last_hidden_state
m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
{_check(run)}
{run.objective.outputs} = feats @ head["fc.weight"].T + head["fc.bias"]
"""


def transformers_usage(run: Run, folder: str) -> str:
    return (
        f"`AutoModel` and a few lines of PyTorch give this model's {run.objective.outputs} for a list of `texts`, "
        f"without tunelab (a text longer than the max_length is read as its first window):\n\n```python\n"
        f"{transformers_snippet(run, folder)}```\n\nThe names of the outputs are in `encoder.config.id2label`, the "
        f"problem type in `encoder.config.problem_type`; `decoding.json` says how to read them: "
        f"{run.reading(run.objective.outputs)}."
    )


@torch.inference_mode()
def snippet_logits(run: Run, folder: Path, texts: list[str]) -> torch.Tensor:
    """The outputs the documented lines compute (run here, to check the export)."""
    scope: dict[str, Any] = {"texts": texts}
    with _quiet():  # the encoder's pooler is not saved (the run does not use it): a load report says so
        exec(transformers_snippet(run, str(folder)), scope)
    return scope[run.objective.outputs]


class TransformersFolder:
    """``--format transformers`` (:class:`tunelab.engine.task.LibraryExport`)."""

    checked_by = "AutoModel"

    def usage(self, run: Run, folder: str) -> str:
        return transformers_usage(run, folder)

    def write(self, run: Run, folder: Path, card: str, examples: Any, n: int) -> float:
        """The folder, then the documented lines on the examples' texts against the run's model on
        the same tokens: the largest difference of their outputs."""
        write_transformers(run, folder, card)
        graph = TextGraph()
        model = graph.wrap(run.model.float().eval().requires_grad_(False), torch.nn.Identity()).eval()
        with torch.inference_mode():
            ours = model(*graph.as_tensors(examples, n)).numpy()
        return float(np.abs(snippet_logits(run, folder, list(examples.texts)[:n]).numpy() - ours).max())
