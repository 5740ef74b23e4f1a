"""What a run records about its own folder, in ``RUN_DIR/run.json``, so that a file changed by hand
or copied in from another run is noticed instead of silently used:

- ``run_id``: a random id, also in the state of the run's checkpoints (``checkpoints/*.safetensors``);
- ``config``: ``config.yaml`` as the run last wrote it (the run itself rewrites it as it resolves
  the learning rates, the few-shot recipe, ``regularization: auto``...), so that ``fit --resume``
  can tell an edit by hand from the run's own changes;
- ``model_sha256``: the SHA-256 of ``model.safetensors``, checked wherever the model is loaded.

A value is recorded before the file it describes is renamed into place, and the value before it is
kept too (``config_before``, ``model_sha256_before``): a kill between the two writes leaves a
folder that still checks. A folder without ``run.json`` (an older tunelab's) is not checked.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from tunelab import checkpoint as ckpt
from tunelab.config import Config, build_config, dump_config
from tunelab.errors import ConfigError, RunError
from tunelab.run_folder import RunFolder

RECORD = RunFolder.RECORD


def read_record(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR/run.json, or {} where the run has none."""
    path = run_dir / RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(
            f"{path} is not JSON ({e}); tunelab writes it to check the run's files: delete it to use the "
            "folder without these checks"
        ) from None
    if not isinstance(record, dict):
        raise RunError(
            f"{path} holds a {type(record).__name__}, not the JSON object tunelab writes; delete it to use "
            "the folder without its checks"
        )
    return record


def _update(run_dir: Path, **values: Any) -> dict[str, Any]:
    record = read_record(run_dir)
    record.setdefault("run_id", uuid.uuid4().hex)
    for key, value in values.items():
        if record.get(key) != value:
            record[f"{key}_before"], record[key] = record.get(key), value
    ckpt.atomic_write_text(run_dir / RECORD, json.dumps(record, indent=1))
    return record


def run_id(run_dir: Path) -> str | None:
    """The id of the run in ``run_dir`` (None for a folder without run.json)."""
    return read_record(run_dir).get("run_id")


def write_config(run_dir: Path, cfg: Config, *, run_id: str | None = None) -> None:
    """Write RUN_DIR/config.yaml, recording it first (and, for a new folder, the run's id: ``run_id``
    for a folder that belongs to another run's, such as its refit)."""
    text = dump_config(cfg)
    if run_id is not None and not (run_dir / RECORD).is_file():
        ckpt.atomic_write_text(run_dir / RECORD, json.dumps({"run_id": run_id}, indent=1))
    _update(run_dir, config=text)
    ckpt.atomic_write_text(run_dir / RunFolder.CONFIG, text)


def check_config(run_dir: Path, cfg: Config) -> None:
    """Refuse a resume of ``run_dir`` whose config.yaml (read as ``cfg``) is not what the run wrote:
    the differing keys named, old and new values, and how to start a new run from the edited file."""
    record = read_record(run_dir)
    if not record.get("config"):
        return
    current = yaml.safe_load(dump_config(cfg))
    written = [_normalized(t) for t in (record["config"], record.get("config_before")) if t]
    if current in written:
        return
    changes = _differences(written[0], current)
    name = cfg.run.name or run_dir.name
    raise RunError(
        f"{run_dir}/config.yaml was changed after the run wrote it:\n"
        + "\n".join(f"  {key}: {old} -> {new}" for key, old, new in changes[:20])
        + (f"\n  ... and {len(changes) - 20} more" if len(changes) > 20 else "")
        + "\nA resume continues a run with the config it was trained with. To continue this run, put the "
        f"old values back. To train with the new ones, start a new run from the edited file: "
        f"`tunelab fit {run_dir}/config.yaml --set run.name={name}-new`"
    )


def _normalized(text: str) -> Any:
    """A config the run wrote, as this tunelab writes it: a key added since (with its default) is no
    edit of a run started before it."""
    raw = yaml.safe_load(text)
    try:
        return yaml.safe_load(dump_config(build_config(raw)))
    except ConfigError:  # a key this tunelab no longer has: compared as written
        return raw


def _flat(x: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to values: mappings and lists of mappings (the stages) are opened up."""
    items: list[tuple[Any, Any]]
    if isinstance(x, dict):
        items = list(x.items())
    elif isinstance(x, list) and x and all(isinstance(v, dict) for v in x):
        items = list(enumerate(x))
    else:
        return {prefix: x}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _differences(old: Any, new: Any) -> list[tuple[str, str, str]]:
    a, b = _flat(old), _flat(new)
    missing = "(none)"
    return [
        (k, json.dumps(a[k]) if k in a else missing, json.dumps(b[k]) if k in b else missing)
        for k in list(a) + [k for k in b if k not in a]
        if a.get(k, missing) != b.get(k, missing)
    ]


def record_model(run_dir: Path, weights: Path) -> None:
    """Record the SHA-256 of ``weights`` (the final weights, before they are renamed into place)."""
    _update(run_dir, model_sha256=ckpt.file_sha256(weights))


def check_model(run_dir: Path, weights: Path) -> None:
    """Refuse a model.safetensors that is not the file the run in ``run_dir`` wrote (one copied in
    from another run with the same shapes would load without a word)."""
    record = read_record(run_dir)
    known = [record[k] for k in ("model_sha256", "model_sha256_before") if record.get(k)]
    if not known:
        return
    digest = ckpt.file_sha256(weights)
    if digest in known:
        return
    again = (
        f", or write it again from the run's checkpoints with `tunelab fit --resume {run_dir}`"
        if RunFolder(run_dir).resumable()
        else ""
    )
    raise RunError(
        f"{weights} is not the file this run wrote: its SHA-256 is {digest[:16]}..., the run recorded "
        f"{known[0][:16]}... in {run_dir / RECORD} when it saved its model (was it copied from another "
        f"run?). Put this run's own model.safetensors back{again}"
    )


def check_checkpoint(run_dir: Path, state: dict[str, Any], source: Path) -> None:
    """Refuse a checkpoint whose state names another run than the one in ``run_dir``."""
    mine, theirs = run_id(run_dir), state.get("run_id")
    if mine and theirs and mine != theirs:
        raise RunError(
            f"{source} belongs to another run (run id {theirs}; this run's, in {run_dir / RECORD}, is "
            f"{mine}): it was copied from another run folder. Put this run's own checkpoint back, or delete "
            f"{source.parent} to train the run again from the start"
        )
