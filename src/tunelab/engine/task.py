"""What a modality hands the engine and the use cases: a :class:`Task`, one per modality package
(``tunelab.vision.task.IMAGES``, ``tunelab.text.task.TEXTS``), registered in :mod:`tunelab.tasks`.

Everything that differs between images and texts is a field here; the loop, the baselines, the
report, the card, the exports and ``predict`` read these and never ask which modality they have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from tunelab.config import Config, DataConfig, Modality, ModelConfig
from tunelab.engine.data import Splits
from tunelab.engine.loop import LoopContext, TaskLoop
from tunelab.engine.model import FineTuneModel
from tunelab.runs import Run

Gallery = tuple[np.ndarray, np.ndarray, np.ndarray]
D = TypeVar("D", bound=DataConfig)


class GraphInputs(Protocol):
    """How a graph export (ONNX, TorchScript) feeds the run's model: plain tensors in, logits out."""

    def wrap(self, model: nn.Module, head: nn.Module) -> nn.Module: ...  # behind plain tensors; head: the objective's
    def input_names(self, cfg: Config) -> list[str]: ...
    def as_tensors(self, examples: Any, n: int) -> tuple[torch.Tensor, ...]: ...  # the first n examples' inputs
    def image_size(self, cfg: Config) -> int | None: ...  # the graph's input resolution, when it has one
    def feed(self, cfg: Config, names: list[str]) -> str: ...  # what to feed it, for the model card
    def dynamic_dims(self) -> dict[int, str]: ...  # every input's varying dimensions: {0: "batch"[, 1: "length"]}


class LibraryExport(Protocol):
    """A run as a folder its backbone's library loads without tunelab (``--format timm``, ``transformers``)."""

    checked_by: str  # what the export's outputs are compared with the run's by: timm, AutoModel

    def usage(self, run: Run, folder: str) -> str: ...  # the model card's how-to
    def write(self, run: Run, folder: Path, card: str, examples: Any, n: int) -> float: ...  # max |difference| on n examples


class RawInputs(Protocol):
    """What the raw-input baseline (:mod:`tunelab.baselines`) reads of a modality's examples: the
    inputs of a split and the features a linear model is fitted on (``<model>_<name>``)."""

    name: str  # in the baseline's name: logreg_pixels, ridge_tfidf

    def inputs(self, split: Any, rows: np.ndarray | None = None) -> Any: ...  # all examples, or ``rows``
    def features(self, x: Any) -> tuple[Any, Any]: ...  # fitted on x: (transform, transformed x)


class ProbeChoice(Protocol):
    """A setting of the modality's that the probe on the pretrained features decides (images:
    ``augment: auto``, by whether mirror images keep their class: :mod:`tunelab.vision.auto_augment`)."""

    def wanted(self, cfg: Config) -> bool: ...  # whether the probe is to measure for it
    def measure(  # what the probe records for it (fitted at the probe's C on the sampled examples)
        self,
        model: FineTuneModel,
        inputs: Any,
        features: np.ndarray,
        labels: np.ndarray,
        c: float,
        batch_size: int,
        device: torch.device,
        seed: int,
    ) -> dict[str, Any]: ...
    def resolve(  # the config with it decided from the probe's record (None: no probe), {key: why}
        self, cfg: Config, fit: dict[str, Any] | None, train: Any
    ) -> tuple[Config, dict[str, str]]: ...


class PostFit(Protocol):
    """A step after training that adds to the network before it is saved (texts: the lexical blend,
    :class:`tunelab.text.lexical_fit.LexicalStep`); one object a run, holding what it chose."""

    name: str  # its entry in metrics.json
    record: dict[str, Any]  # what metrics.json keeps of it (the test scores added by test_logits)

    def trained_config(self, cfg: Config) -> Config: ...  # the config of the network that trains, without it
    def choose(  # after the first fit, on its validation logits; the config recording the choice
        self, cfg: Config, model: FineTuneModel, splits: Splits[Any], val_logits: torch.Tensor | None, main: bool
    ) -> Config: ...
    def finish(
        self, model: FineTuneModel, splits: Splits[Any], seed: int, device: torch.device
    ) -> None: ...  # joins the final model
    def test_logits(self, logits: torch.Tensor, test: Any, batch_size: int) -> torch.Tensor: ...  # the network's, with it


@dataclass(frozen=True)
class Task(Generic[D]):
    modality: Modality  # its configuration: data section, defaults, recipes, checks
    raw: RawInputs
    load_data: Callable[[D], Splits[Any]]
    load_eval_set: Callable[[str, list[str], D], Any]
    # real examples of a run's own data the run never trained on, given its data config and classes (export checks)
    held_out: Callable[[D, list[str]], Any]
    classes: Callable[[D], list[str]]  # the training source's class names, nothing decoded
    # the model of a model section for n outputs, at the data section's input size (None: the backbone's own)
    model: Callable[[ModelConfig, int, D | None], FineTuneModel]
    loop: Callable[[LoopContext], TaskLoop]  # batch order, training inputs, the freeze-boundary cache
    prediction_inputs: Callable[[Config, list[str], list[str]], tuple[list[str], list[str | None], Any]]
    # what the report shows of the validation set beside the metrics; an image gallery is returned
    report_extras: Callable[[Path, Any, np.ndarray | None, list[str]], Gallery | None]
    # what the model card says of the modality: pipeline_tag (the Hub's task), input, limitation, predict_args
    card_facts: Callable[[Config], dict[str, str]]
    noun: str  # one example, in the card and in messages: image, text
    library: str  # where the backbone comes from: timm, transformers (also an export format of that name)
    augment_presets: tuple[str, ...]  # the regularization.augment presets tune searches over (none: no augmentation)
    few_shot: bool  # whether the default recipe turns to the few-shot recipe on a few examples a class (few_shot.py)
    labelled: Callable[[str], bool]  # whether a path or name is labelled data (tunelab extract reads its classes)
    # a teacher run's model made to read the student's inputs (model, student config, teacher config, distill.teacher)
    teacher: Callable[[nn.Module, Config, Config, str], nn.Module]
    graph: GraphInputs  # the exported graph's inputs (tunelab export --format onnx / torchscript)
    library_export: LibraryExport | None = None  # the folder format named ``library``, where the library has one
    post_fit: Callable[[Config, Path], PostFit | None] | None = None  # the run's post-fit step, given its config and folder
    probe_choice: ProbeChoice | None = None  # what the probe on the pretrained features decides for it
    unlabeled: Callable[[str, D], Any] | None = None  # a folder of unlabelled examples to distil on (images)
    # the report summary's words on what the modality decided, from metrics.json and the config:
    # "probe" (appended to what the probe on the pretrained features led to), "post_fit" (a line of its own)
    summary_lines: Callable[[dict[str, Any], Config], dict[str, str]] = lambda metrics, cfg: {}
    # the data key of a folder of decoded inputs that runs can share (a study's trials, ranks); None: none
    decode_key: str | None = None

    def build_model(self, cfg: Config, num_classes: int) -> FineTuneModel:
        """The model a run's config describes, for ``num_classes`` outputs."""
        return self.model(cfg.model, num_classes, cfg.data)  # type: ignore[arg-type]  # the modality's own section

    @property
    def name(self) -> str:
        """What the examples are called in messages: images, texts."""
        return self.modality.name
