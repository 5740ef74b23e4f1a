"""Run folders: creation, logging into them, and loading a finished run back.

A run folder holds ``config.yaml`` (fully resolved), ``classes.json``, ``metrics.jsonl`` (one row
per epoch), ``metrics.json`` (final metrics), ``model.safetensors`` (final weights),
``checkpoints/{last,best}.safetensors``, ``log.txt``, ``report.html``, ``README.md`` (the model
card, :mod:`tunelab.card`), ``run.json`` (:mod:`tunelab.run_record`) and ``.lock``. Files are
written whole (:mod:`tunelab.checkpoint`) and never through a symbolic link.

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
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab import checkpoint as ckpt
from tunelab.config import Config
from tunelab.errors import ConfigError, RunError
from tunelab.run_folder import RunFolder, read_json, rewritten_by_resume

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
    objective: Any = None  # the problem type's objective (tunelab.objectives), with what the run decided

    def decoding(self, output: str) -> dict[str, Any]:
        """``decoding.json`` of an export whose model gives ``output`` (logits, probabilities, values)."""
        return dict(self.objective.decoding(self.classes)) | {"output": output}

    def reading(self, output: str) -> str:
        """How a user turns an export's ``output`` into what ``predict`` reports, in words."""
        rule = self.decoding(output)
        steps = [f"{output} [B, {len(self.classes)}]"]
        if "target" in rule:
            steps[0] += f" ({rule['target']}, in its own units)"
        if output == self.objective.outputs and rule["activation"] != "none":  # the graph formats apply it inside
            steps.append(f"a {rule['activation']} over them gives the probabilities")
        if "decision" in rule:
            steps.append(
                f"the decision: {rule['decision']}" + (" (`thresholds` of decoding.json)" if "thresholds" in rule else "")
            )
        return "; ".join(steps)


def read_run_folder(run_dir: Path) -> dict[str, Any]:
    """What a finished (or interrupted) run folder records, for the report and the model card:
    config_text, metrics, history, classes, data and stages (empty where a file is missing)."""
    if not (run_dir / RunFolder.CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
    classes = read_classes(run_dir) if (run_dir / RunFolder.CLASSES).is_file() else []
    return {
        "config_text": (run_dir / RunFolder.CONFIG).read_text(),
        "metrics": read_metrics(run_dir, classes),
        "history": read_history(run_dir),
        "classes": classes,
        "data": read_json(run_dir / RunFolder.DATA, dict, {}),
        "stages": read_json(run_dir / RunFolder.STAGES, dict, {}),
    }


def read_classes(run_dir: Path) -> list[str]:
    """The class names of RUN_DIR/classes.json, in the order of the model's outputs."""
    path = run_dir / RunFolder.CLASSES
    if not path.is_file():
        raise RunError(
            f"{run_dir} has no classes.json (the class names): the run stopped before it read its data; "
            f"continue it with `tunelab fit --resume {run_dir}`"
        )
    classes = read_json(path, list)
    problem = _classes_problem(classes)
    if problem:
        raise RunError(
            f"{path} must be a JSON list of the class names (strings, each once, in the order of the model's "
            f"outputs), but {problem}; restore it from a copy{rewritten_by_resume(run_dir)}"
        )
    return classes


def _classes_problem(classes: list[Any]) -> str | None:
    if not classes:
        return "it is empty"
    for c in classes:
        if not isinstance(c, str):
            return f"{c!r} is not a string"
    if len(set(classes)) < len(classes):
        return f"{next(c for c in classes if classes.count(c) > 1)!r} is in it twice"
    return None


def read_metrics(run_dir: Path, classes: list[str]) -> dict[str, Any]:
    """RUN_DIR/metrics.json ({} before the run ends), its val and test scores checked against
    ``classes`` (what the report and the model card read from it)."""
    path = run_dir / RunFolder.METRICS
    metrics = read_json(path, dict, {})
    for split in ("val", "test"):
        problem = _split_problem(metrics[split], len(classes)) if split in metrics else None
        if problem:
            raise RunError(
                f"{path}: {split} {problem}, not what the run wrote; restore the file from a copy{rewritten_by_resume(run_dir)}"
            )
    return metrics


def _split_problem(m: Any, n_classes: int) -> str | None:
    if not isinstance(m, dict):
        return f"is a {type(m).__name__}, not an object of scores"
    scores = [k for k, v in m.items() if not isinstance(v, (dict, list))] + ["loss"]  # the problem type's metrics
    for key in dict.fromkeys(scores):
        if not isinstance(m.get(key), (int, float)) or isinstance(m.get(key), bool):
            return f"has {key} {m.get(key)!r}, not a number"
    if "per_class" in m and (
        not isinstance(m["per_class"], dict) or not all(isinstance(v, dict) for v in m["per_class"].values())
    ):
        return "has a per_class entry that is not an object of class names to scores"
    cm = m.get("confusion_matrix")
    if (
        cm is not None
        and n_classes
        and (not isinstance(cm, list) or len(cm) != n_classes or not all(isinstance(r, list) and len(r) == n_classes for r in cm))
    ):
        return f"has a confusion_matrix that is not {n_classes} x {n_classes} (one row and column a class of classes.json)"
    return None


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of RUN_DIR/metrics.jsonl (empty before the first epoch ends). A last row
    without its newline is one a killed process was writing: it is left out (a resume then cuts the
    file to the complete rows); a damaged row before it is an error naming the line."""
    path = run_dir / RunFolder.HISTORY
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
            raise RunError(
                f"{path}, line {lineno}: not a JSON row ({e.msg}); the file was changed by hand or "
                "damaged: remove the line (a resume repeats the epochs after the last checkpoint)"
            ) from None
    return rows


LOCK = RunFolder.LOCK


def new_run_dir(cfg: Config) -> Path:
    """A new folder ``run.dir/run.name`` (``-2``, ``-3``... when taken) that no other process can
    get as well: it is claimed by creating its lock file exclusively, so fits started at the same
    moment with the same name get folders of their own."""
    base = Path(cfg.run.dir)
    if base.exists() and not base.is_dir():
        raise ConfigError(
            f"run.dir: {base} is a file, not a folder; set run.dir to a folder (it is created if "
            "missing), e.g. --set run.dir=runs"
        )
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
        os.close(os.open(d / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except (FileExistsError, NotADirectoryError):  # taken by another process, or a file of that name
        return False
    return True


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock for the duration: the one writer of the folder. The OS releases it when
    the process ends (a crash or kill -9 included), so a stale lock never blocks a resume."""
    fd = ckpt.open_run_file(run_dir / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunError(
            f"{run_dir} is in use by another tunelab process ({holder}); a run folder has one writer at "
            "a time: wait for that process to end (or stop it), then run the command again"
        ) from None
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


# safetensors' own temporary file (Rust's tempfile: ".tmp" and 6 letters or digits), which it writes
# and renames to checkpoint.save's ``.NAME.*.tmp``: a kill inside the save leaves it behind
SAFETENSORS_TMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")


def remove_stale_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in the run folder (``.NAME.*.tmp`` of the
    atomic writes, safetensors' ``.tmpXXXXXX``, ``*.partial.npy`` of an unfinished cache file); only
    the lock holder calls this."""
    stale = [p for p in run_dir.rglob("*") if p.is_file() and _is_temporary(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _is_temporary(name: str) -> bool:
    return (
        (name.startswith(".") and name.endswith(".tmp"))
        or name.endswith(".partial.npy")
        or SAFETENSORS_TMP.fullmatch(name) is not None
    )


class LogFile(logging.Handler):
    """Appends to a log in a run or study folder (RUN_DIR/log.txt, STUDY_DIR/tune.log), never
    through a symbolic link. A write that fails (a full disk)
    stops the run with one error naming the file, where logging's own FileHandler prints a
    traceback for every line and carries on; the handler writes nothing after it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.fd, self.failed = path, ckpt.open_append(path), False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        try:
            data = memoryview((self.format(record) + "\n").encode())
        except Exception:
            self.handleError(record)  # a bad format string in a log call: logging's usual report
            return
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as e:
            self.failed = True
            if ckpt.is_disk_full(e):
                raise ckpt.disk_full(self.path, len(data), "a line of the log") from None
            raise RunError(f"cannot write {self.path}: {e.strerror}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        super().close()


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
    fh = LogFile(run_dir / RunFolder.LOG)
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
