"""The text part of a run's report: the validation texts the model is most confidently wrong about
(in place of the image gallery), kept in RUN_DIR/wrong_texts.json, which the report renders (so
``tunelab report`` can rebuild the page later)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.checkpoint import atomic_write_text
from tunelab.metrics import most_confidently_wrong
from tunelab.run_folder import RunFolder

WRONG_TEXTS = RunFolder.WRONG_TEXTS  # the most confidently wrong validation texts of a text run


def write_wrong_texts(run_dir: Path, data: Any, probs: np.ndarray | None, classes: list[str], n: int = 20) -> None:
    """The ``n`` misclassified texts of ``data`` with the highest predicted probability."""
    if data is None or probs is None:
        return
    labels = data.labels.numpy()
    pred = probs.argmax(1)
    wrong = most_confidently_wrong(probs, labels, n)
    rows = [
        {
            "text": data.texts[i] + (f" [SEP] {data.pairs[i]}" if data.pairs is not None else ""),
            "item": data.items[i],
            "true": classes[labels[i]],
            "predicted": classes[pred[i]],
            "probability": float(probs[i, pred[i]]),
        }
        for i in wrong
    ]
    atomic_write_text(run_dir / WRONG_TEXTS, json.dumps(rows, indent=1))
