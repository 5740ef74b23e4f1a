"""What a run writes as it goes: metrics.jsonl, TensorBoard scalars, RUN_DIR/stages.json, the epoch line."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunelab import checkpoint as ckpt
from tunelab.config import StageConfig
from tunelab.run_folder import RunFolder


def write_tensorboard(tb: Any, stages: Sequence[StageConfig], row: dict[str, Any]) -> None:
    """One epoch's row as scalars; the step counts epochs across stages."""
    step = sum(st.epochs for st in stages[: row["stage"]]) + row["epoch"]
    metrics = ["loss"] + [
        k.removeprefix("train_") for k in row if k.startswith("train_") and k not in ("train_loss", "train_count")
    ]
    metrics += [k.removeprefix("val_") for k in row if k.startswith("val_") and k not in ("val_loss", "val_count")]
    for key in dict.fromkeys(metrics):
        scalars = {k: row[f"{k}_{key}"] for k in ("train", "val") if f"{k}_{key}" in row}
        tb.add_scalars(key, scalars, step)
    tb.add_scalar("lr", row["lr"], step)
    for k, v in row.items():
        if k.startswith("penalty_"):
            tb.add_scalar(f"penalty/{k[8:]}", v, step)
    tb.add_scalar("throughput/img_per_s", row["img_per_s"], step)
    tb.flush()


def record_stage(run_dir: Path, stages: Sequence[StageConfig], si: int, **values: Any) -> None:
    """Add ``values`` (the printed tables, seconds, the cache line) to stage ``si`` in RUN_DIR/stages.json."""
    path = run_dir / RunFolder.STAGES
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    recorded.setdefault(str(si), {"name": stages[si].name}).update(values)
    ckpt.atomic_write_text(path, json.dumps(recorded, indent=1))


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """One epoch's row at the end of metrics.jsonl (a resume first cuts the file to its position),
    in one write: a row cut by a kill or a full disk has no newline, and a resume drops it."""
    data = (json.dumps(row) + "\n").encode()
    fd = ckpt.open_append(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        if ckpt.is_disk_full(e):
            raise ckpt.disk_full(path, len(data), "the epoch's row") from None
        raise
    finally:
        os.close(fd)


def write_epoch(run_dir: Path | None, tb: Any, stages: Sequence[StageConfig], row: dict[str, Any]) -> None:
    """One epoch's row into RUN_DIR/metrics.jsonl (``run_dir`` None: a rank that writes no file)
    and into TensorBoard (``tb`` None: none)."""
    if run_dir is not None:
        append_metrics(run_dir / RunFolder.HISTORY, row)
    if tb is not None:
        write_tensorboard(tb, stages, row)


def val_columns(metrics: dict[str, Any], count: int, reported: tuple[str, ...] = ("accuracy", "macro_f1")) -> dict[str, Any]:
    """An epoch's validation columns: the loss and the ``reported`` metrics (the objective's, the
    primary first) of its ``count`` examples."""
    return {"val_loss": metrics["loss"]} | {f"val_{k}": metrics[k] for k in reported} | {"val_count": count}


def stage_title(stages: Sequence[StageConfig], si: int, lr: float) -> str:
    """The title of a stage's layer table: its epochs, optimizer, rate, schedule and BN mode."""
    stage = stages[si]
    return (
        f"stage {si + 1}/{len(stages)} '{stage.name or si}': {stage.epochs} epochs, "
        f"{stage.optimizer} lr {lr:.2e}, {stage.schedule} schedule, BN {'trains' if stage.train_bn else 'frozen'}"
    )


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """The line the log gets after every epoch."""
    s = f"stage {row['stage'] + 1} epoch {row['epoch'] + 1}/{epochs}: train loss {row['train_loss']:.4f}"
    train = [k for k in row if k.startswith("train_") and k not in ("train_loss", "train_count")]
    if train:
        s += f" {_short(train[0][6:])} {row[train[0]]:.4f}"
    pens = {k[8:]: v for k, v in row.items() if k.startswith("penalty_")}
    if pens:
        s += " | " + ", ".join(f"{k} {v:.4g}" for k, v in pens.items())
    if "val_loss" in row:
        primary = next(k for k in row if k.startswith("val_") and k != "val_loss")  # the objective's primary metric
        s += f" | val loss {row['val_loss']:.4f} {_short(primary[4:])} {row[primary]:.4f}"
    return s + f" | {row['seconds']:.1f} s, {row['img_per_s']:.0f} examples/s, lr {row['lr']:.2e}"


def _short(metric: str) -> str:
    """A metric's name in the epoch line (the line single-label runs have always printed says acc)."""
    return {"accuracy": "acc", "subset_accuracy": "subset acc"}.get(metric, metric)
