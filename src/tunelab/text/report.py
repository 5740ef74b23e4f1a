"""The text part of a run's report: the validation texts the model is most confidently wrong about
(in place of the image gallery), kept in RUN_DIR/wrong_texts.json so ``tunelab report`` can
rebuild the page later."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.checkpoint import atomic_write_text
from tunelab.metrics import most_confidently_wrong

WRONG_TEXTS = "wrong_texts.json"


def write_wrong_texts(run_dir: Path, data: Any, probs: np.ndarray | None, classes: list[str], n: int = 20) -> None:
    """The ``n`` misclassified texts of ``data`` with the highest predicted probability."""
    if data is None or probs is None:
        return
    labels = data.labels.numpy()
    pred = probs.argmax(1)
    wrong = most_confidently_wrong(probs, labels, n)
    rows = [{"text": data.texts[i] + (f" [SEP] {data.pairs[i]}" if data.pairs is not None else ""),
             "item": data.items[i], "true": classes[labels[i]], "predicted": classes[pred[i]],
             "probability": float(probs[i, pred[i]])} for i in wrong]
    atomic_write_text(run_dir / WRONG_TEXTS, json.dumps(rows, indent=1))


def wrong_texts_html(run_dir: Path, max_chars: int = 300) -> str:
    """An HTML table of RUN_DIR/wrong_texts.json, or '' when the run has none."""
    path = run_dir / WRONG_TEXTS
    if not path.is_file():
        return ""
    rows = json.loads(path.read_text())
    if not rows:
        return "<p>no misclassified validation texts</p>"
    head = "<tr><th>text</th><th>true</th><th>predicted</th><th>probability</th></tr>"
    body = "".join(
        f'<tr><td style="text-align:left">{html.escape(r["text"][:max_chars] + ("..." if len(r["text"]) > max_chars else ""))}'
        f'</td><td>{html.escape(r["true"])}</td><td>{html.escape(r["predicted"])}</td><td>{r["probability"]:.3f}</td></tr>'
        for r in rows)
    return f"<h3>most confidently wrong validation texts</h3><table>{head}{body}</table>"
