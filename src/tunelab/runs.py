"""Run folders: creation, logging into them, and loading a finished run back.

A run folder holds ``config.yaml`` (fully resolved), ``classes.json``, ``metrics.jsonl`` (one row
per epoch), ``metrics.json`` (final metrics), ``model.safetensors`` (final weights),
``checkpoints/{last,best}.safetensors``, ``log.txt``, ``report.html`` and ``README.md`` (the model
card, :mod:`tunelab.card`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.config import Config

log = logging.getLogger("tunelab")


@dataclass
class Run:
    """A trained run: its folder, config, model, class names, final metrics and per-epoch history."""

    dir: Path
    config: Config
    model: Any  # TuneModel
    classes: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    rank: int = 0  # in a distributed run, the process this object lives in (rank 0 wrote the folder)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of RUN_DIR/metrics.jsonl (empty before the first epoch ends)."""
    path = run_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def new_run_dir(cfg: Config) -> Path:
    base = Path(cfg.run.dir)
    name = cfg.run.name or time.strftime("%Y%m%d-%H%M%S")
    d = base / name
    i = 1
    while d.exists() and any(d.iterdir()):
        i += 1
        d = base / f"{name}-{i}"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def run_logging(run_dir: Path, *, main: bool = True) -> Iterator[None]:
    """Log INFO to stdout and everything to ``run_dir/log.txt`` for the duration of a run. In a
    distributed run only rank 0 (``main``) does; the other ranks print warnings and errors."""
    if not main:
        level = log.level
        log.setLevel(logging.WARNING)
        try:
            yield
        finally:
            log.setLevel(level)
        return
    log.setLevel(logging.INFO)
    fh = logging.FileHandler(run_dir / "log.txt")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(fh)
    added_console = False
    if not any(getattr(h, "_tunelab_console", False) for h in log.handlers):
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(logging.Formatter("%(message)s"))
        sh._tunelab_console = True  # type: ignore[attr-defined]
        log.addHandler(sh)
        added_console = True
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(fh)
        fh.close()
        if added_console:
            log.removeHandler(sh)
