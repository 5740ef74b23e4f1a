"""The files of a run folder, named in one place, and its JSON files read and written whole.

    folder = RunFolder(run_dir)
    folder.write_json(RunFolder.METRICS, final)            # atomic: a reader never sees half a file
    classes = folder.read_json(RunFolder.CLASSES, list)    # an edited or damaged file: RunError naming it

The writers of each file are the modules named beside it; what reads a run back is :mod:`tunelab.runs`.
A modality's own files (the text blend's ``lexical.json``) are named in its package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab import checkpoint as ckpt
from tunelab.errors import RunError


@dataclass(frozen=True)
class RunFolder:
    path: Path

    CONFIG = "config.yaml"  # the resolved config (tunelab.run_record.write_config)
    RECORD = "run.json"  # the run's id, config.yaml as it last wrote it, the model's digest (tunelab.run_record)
    CLASSES = "classes.json"  # the names of the model's outputs, in order
    DATA = "data.json"  # the splits' counts
    HISTORY = "metrics.jsonl"  # one row an epoch (tunelab.engine.writer)
    STAGES = "stages.json"  # the tables printed for each stage (tunelab.engine.writer)
    METRICS = "metrics.json"  # the final metrics
    MODEL = "model.safetensors"  # the final weights
    OBJECTIVE = "objective.json"  # what the objective decided (thresholds, target scale), for predict and export
    BASELINES = "baselines.json"  # the baselines' scores, for users and for a resume
    PROBE = "pretrained_fit.json"  # what the probe on the pretrained features found
    CHECKPOINTS = "checkpoints"  # last.safetensors (every epoch) and best.safetensors (tunelab.engine.resume)
    LAST = "checkpoints/last.safetensors"
    LOG = "log.txt"
    REPORT = "report.html"
    CARD = "README.md"  # the model card (tunelab.card)
    WRONG_TEXTS = "wrong_texts.json"  # a modality's most confidently wrong validation examples, as text (texts)
    LOCK = ".lock"  # the one writer's OS lock (tunelab.runs.lock_run_dir)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, value: Any) -> None:
        ckpt.atomic_write_text(self.path / name, json.dumps(value, indent=1))

    def read_json(self, name: str, kind: type, default: Any = None) -> Any:
        return read_json(self.path / name, kind, default)

    def resumable(self) -> bool:
        """Whether a resume would write the run's files again (it has a last checkpoint)."""
        return (self.path / self.LAST).is_file()


def read_json(path: Path, kind: type, default: Any = None) -> Any:
    """The JSON value of the run file ``path`` (``default`` where it is missing), which must be a
    ``kind`` (list or dict): an edited or damaged file is an error naming it."""
    if not path.is_file():
        return default
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(
            f"{path} is not JSON ({e}); the run wrote it, so it was edited or damaged: restore it from a "
            f"copy{rewritten_by_resume(path.parent)}"
        ) from None
    if not isinstance(value, kind):
        raise RunError(
            f"{path} holds a JSON {type(value).__name__}, where the run wrote a JSON "
            f"{'list' if kind is list else 'object'}: restore it from a copy{rewritten_by_resume(path.parent)}"
        )
    return value


def rewritten_by_resume(run_dir: Path) -> str:
    """The end of a message about a damaged run file: how to have the run write it again, if it can."""
    if RunFolder(run_dir).resumable():
        return f"; `tunelab fit --resume {run_dir}` writes it again"
    return ""
