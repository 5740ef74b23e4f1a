"""Run folders: creation, logging into them, and loading a finished run back.

A run folder holds ``config.yaml`` (fully resolved), ``classes.json``, ``metrics.jsonl`` (one row
per epoch), ``metrics.json`` (final metrics), ``model.safetensors`` (final weights),
``checkpoints/{last,best}.safetensors``, ``log.txt``, ``report.html``, ``README.md`` (the model
card, :mod:`tunelab.card`) and ``.lock``.

A run folder has one writer at a time: fit, resume and tune trials hold an OS lock on
``RUN_DIR/.lock`` (``flock``: released when the process ends, however it ends), with the holder's
process id written in it, so that a second writer is refused with that id named.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.config import Config
from tunelab.errors import ConfigError, RunError

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


def read_run_folder(run_dir: Path) -> dict[str, Any]:
    """What a finished (or interrupted) run folder records, for the report and the model card:
    config_text, metrics, history, classes, data and stages (empty where a file is missing)."""
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")

    def load_json(name: str, default: Any) -> Any:
        p = run_dir / name
        return json.loads(p.read_text()) if p.is_file() else default

    return {"config_text": (run_dir / "config.yaml").read_text(), "metrics": load_json("metrics.json", {}),
            "history": read_history(run_dir), "classes": load_json("classes.json", []),
            "data": load_json("data.json", {}), "stages": load_json("stages.json", {})}


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of RUN_DIR/metrics.jsonl (empty before the first epoch ends). A last row
    without its newline is one a killed process was writing: it is left out (a resume then cuts the
    file to the complete rows); a damaged row before it is an error naming the line."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")  # the part after the last newline is '' unless a write was cut
    rows = []
    for lineno, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RunError(f"{path}, line {lineno}: not a JSON row ({e.msg}); the file was changed by hand or "
                           "damaged: remove the line (a resume repeats the epochs after the last checkpoint)") from None
    return rows


LOCK = ".lock"


def new_run_dir(cfg: Config) -> Path:
    """A new folder ``run.dir/run.name`` (``-2``, ``-3``... when taken) that no other process can
    get as well: it is claimed by creating its lock file exclusively, so fits started at the same
    moment with the same name get folders of their own."""
    base = Path(cfg.run.dir)
    if base.exists() and not base.is_dir():
        raise ConfigError(f"run.dir: {base} is a file, not a folder; set run.dir to a folder (it is created if "
                          "missing), e.g. --set run.dir=runs")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"run.dir: {base} cannot be created: a part of that path is a file, not a folder") from None
    name = cfg.run.name or time.strftime("%Y%m%d-%H%M%S")
    i = 1
    while not _claim(base / (name if i == 1 else f"{name}-{i}")):
        i += 1
    return base / (name if i == 1 else f"{name}-{i}")


def _claim(d: Path) -> bool:
    """Make ``d`` ours if it is new or empty (a folder made by hand): only one process can create
    its lock file."""
    try:
        d.mkdir(exist_ok=True)
        if any(d.iterdir()):
            return False
        os.close(os.open(d / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except (FileExistsError, NotADirectoryError):  # taken by another process, or a file of that name
        return False
    return True


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock for the duration: the one writer of the folder. The OS releases it when
    the process ends (a crash or kill -9 included), so a stale lock never blocks a resume."""
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunError(f"{run_dir} is in use by another tunelab process ({holder}); a run folder has one writer at "
                       "a time: wait for that process to end (or stop it), then run the command again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    try:
        yield
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the lock


def _holder(fd: int) -> str:
    """Who holds the lock, as it wrote itself into the file (it writes right after locking)."""
    for _ in range(20):
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "process id not written yet"


def remove_stale_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in the run folder (``.NAME.*.tmp`` of the
    atomic writes, ``*.partial.npy`` of an unfinished cache file); only the lock holder calls this."""
    stale = [p for pattern in (".*.tmp", "*.partial.npy") for p in run_dir.rglob(pattern) if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
