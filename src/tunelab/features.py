"""``tunelab extract``: a pretrained backbone (a config) or a finished run as a feature extractor.

Feature extraction is the cheap relative of fine-tuning: the network stays as it is and its pooled
features (what the head's classifier layers see) feed a simple model of your own::

    feats = tunelab.extract("runs/demo", "photos/")          # or a config: the pretrained backbone
    feats.features.shape, feats.labels, feats.classes        # [N, D] float32; class index per row, -1 unknown
    LogisticRegression().fit(feats.features, feats.labels)

Inputs are decoded (texts tokenized) once as for training, with the data config's decode and
token caches, and run through the model in batches with bf16 autocast where the device gains by
it (the linear probe's own machinery, :func:`tunelab.engine.probe.pooled_features`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.api import load_run
from tunelab.checkpoint import atomic_write_folder
from tunelab.config import Config, load_config
from tunelab.engine.device import pick_device, place
from tunelab.engine.model import FineTuneModel
from tunelab.engine.probe import pooled_features
from tunelab.errors import DataError
from tunelab.objectives import label_text
from tunelab.tasks import task_for

log = logging.getLogger("tunelab")


@dataclass
class Features:
    """Pooled features of a set of inputs, with what identifies each row."""

    features: np.ndarray  # float32 [N, D]
    items: list[str]  # the file (image), or FILE:LINE (text), of each row
    labels: np.ndarray  # the targets: class index (-1 where the input has no label), multi-hot rows or values
    classes: list[str]
    model: str = ""  # the run folder or config the features come from
    info: dict[str, Any] = field(default_factory=dict)  # device, precision, seconds

    def save(self, folder: str | Path) -> Path:
        """features.npy, index.csv (row, item, label, class) and meta.json as the folder ``folder``,
        written whole: a kill leaves the earlier folder or the new one, never a mix of the two."""
        out = Path(folder)
        buf = io.BytesIO()
        np.save(buf, self.features)
        rows = io.StringIO()
        w = csv.writer(rows)
        w.writerow(["row", "item", "label", "class"])
        for i, (item, y) in enumerate(zip(self.items, self.labels)):
            # a class index and its name; a multi-label row's labels or a regression's value, in both columns
            index = np.issubdtype(y.dtype, np.integer)
            text = "" if index and y < 0 else label_text(y, self.classes)
            w.writerow([i, item, int(y) if index else text, text])
        meta = {
            "model": self.model,
            "rows": len(self.items),
            "dim": int(self.features.shape[1]),
            "classes": self.classes,
            **self.info,
        }
        files = {
            "features.npy": buf.getvalue(),
            "index.csv": rows.getvalue().encode(),
            "meta.json": json.dumps(meta, indent=1).encode(),
        }
        atomic_write_folder(out, files, "extract's output")
        return out


def _model(source: str | Path) -> tuple[FineTuneModel, Config]:
    """A finished run's model, or a config's pretrained backbone (the head is never used)."""
    p = Path(source)
    if p.is_dir():
        run = load_run(p)
        return run.model, run.config
    cfg = load_config(p)
    num = 1000 if cfg.model.num_classes == "imagenet" else 2  # any head: only the features before it are read
    return place(task_for(cfg).build_model(cfg, num), "cpu"), cfg


def _inputs(cfg: Config, spec: str) -> tuple[Any, list[str], np.ndarray, list[str]]:
    """(model inputs, items, labels, classes) of everything in ``spec``, decoded or tokenized once."""
    task = task_for(cfg)
    if task.labelled(spec):
        data = cfg.data.model_copy(update={"train": spec, "test_samples_per_class": None})
        try:
            classes = task.classes(data)
            examples = task.load_eval_set(spec, classes, data)
            return examples.inputs, list(examples.items), examples.labels.numpy(), classes
        except DataError as e:
            if "no column" not in str(e):  # a table without the label column (a text table): unlabelled
                raise
    items, _, inputs = task.prediction_inputs(cfg, [spec], [])
    return inputs, items, np.full(len(items), -1, dtype=np.int64), []


def extract(
    source: str | Path, data: str | Path, *, out: str | Path | None = None, batch_size: int | None = None, device: str = "auto"
) -> Features:
    """Pooled features of every example in ``data`` (an image folder, class folder, CSV manifest,
    built-in set; for a text model a CSV/TSV/JSON lines file or a file of one text per line) from
    ``source`` (a finished run folder, or a config whose pretrained backbone is used). With ``out``
    they are also written there (:meth:`Features.save`)."""
    t0 = time.perf_counter()
    model, cfg = _model(source)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    inputs, items, labels, classes = _inputs(cfg, str(data))
    dev = pick_device(device)
    t1 = time.perf_counter()
    x = pooled_features(place(model, dev), inputs, batch_size or cfg.data.eval_batch_size, dev)
    info = {"device": str(dev), "inputs_seconds": round(t1 - t0, 3), "model_seconds": round(time.perf_counter() - t1, 3)}
    feats = Features(x.astype(np.float32), items, labels, classes, str(source), info)
    if out is not None:
        log.info("features: %s", feats.save(out))
    return feats
