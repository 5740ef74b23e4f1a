"""Atomic checkpoints: tensors in safetensors, the training state as JSON in its metadata.

One file per checkpoint is written to a temporary name, fsynced and renamed over the old one, so
a kill at any moment leaves either the previous checkpoint or the new one, never half of each.
A readable copy of the JSON state is written beside it (``last.json``) for people; resume reads
the state from the safetensors file itself, so the two can never disagree.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from tunelab.errors import ConfigError, DiskFullError, ModelError, RunError


def temp_file(path: Path) -> tuple[int, str]:
    """A new file beside ``path`` to write and rename over it: ``.NAME.XXXXXXXX.tmp``, the name
    :func:`tunelab.runs.remove_stale_files` clears after a kill. Created with mode 0666 less the
    umask, as ``open`` creates files (``tempfile.mkstemp`` gives 0600: a model or report no one
    else could read, beside a log everyone could)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666), str(tmp)
        except FileExistsError:
            continue


def open_run_file(path: Path, flags: int) -> int:
    """``os.open`` of a file tunelab writes in a run folder (the log, metrics.jsonl, the lock), never
    through a symbolic link: a link put there would have the run append to, or truncate, the file
    it points to."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise RunError(
            f"{path} is a symbolic link (to {os.readlink(path)}); tunelab writes only files of its own in "
            "a run folder: remove the link, or put a copy of the file it points to in its place"
        ) from None


def open_append(path: Path) -> int:
    """A descriptor appending to ``path`` (created when missing), never through a symbolic link."""
    return open_run_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def file_mode() -> int:
    """The mode ``open`` gives a new file: 0666 less the process's umask (read without changing it,
    where Linux shows it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def follow_umask(path: Path) -> None:
    """Give the file ``path``, or every file in the folder ``path``, the mode a new file gets: the
    libraries that write safetensors (safetensors itself, transformers, timm) leave 0600."""
    mode = file_mode()
    for p in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]:
        os.chmod(p, mode)


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, len(data), "the file") from None
        raise
    _fsync_dir(path.parent)


def is_disk_full(e: BaseException) -> bool:
    """An OSError with ENOSPC, or safetensors' own error for it (which is no OSError)."""
    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e)


def disk_full(path: Path, needed: int, what: str) -> DiskFullError:
    """The error for ``path`` not fitting on its disk: how much it needs and how much is free."""
    free = shutil.disk_usage(path.parent).free
    return DiskFullError(
        f"no space left on device for {path}: {what} needs {_size(needed)}, {_size(free)} free on "
        f"the disk of {path.parent}; free some space or use a folder on a larger disk"
    )


def _size(n: int) -> str:
    i = min(int(math.log(max(n, 1), 1024)), 3)
    return f"{n} bytes" if i == 0 else f"{n / 1024**i:.1f} {('KiB', 'MiB', 'GiB')[i - 1]}"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_folder(path: Path, files: dict[str, bytes], what: str = "this folder") -> None:
    """Write ``files`` (name: bytes) as the whole folder ``path``: into a sibling folder first, which
    then takes the place of ``path`` in one step, so that a kill at any moment leaves the earlier
    folder or the new one, never files of both. An earlier folder there must hold only (some of)
    these names: anything else in it would be lost with it, so that is refused."""
    path = path.resolve()  # a link keeps pointing at the new folder; '.' gets a name
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphan_folders(path)
    _check_replaceable(path, files, what)
    new = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()  # not mkdtemp: the folder's mode follows the umask, as a plain mkdir's would
    try:
        for name, data in files.items():
            write_synced(new / name, data)
        _fsync_dir(new)
    except BaseException as e:
        shutil.rmtree(new, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full(path, sum(len(d) for d in files.values()), what) from None
        raise
    if not path.exists():
        os.rename(new, path)
    elif not _exchange(new, path):  # no atomic swap here: the old folder is set aside, and put back if need be
        _swap_through_aside(new, path)
    _fsync_dir(path.parent)
    shutil.rmtree(new, ignore_errors=True)  # the earlier folder, after an exchange


def write_synced(path: Path, data: bytes) -> None:
    """``data`` into a new file ``path``, on the disk when this returns."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _check_replaceable(path: Path, files: dict[str, bytes], what: str) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(
            f"{path} is a file; {what} is written as a folder of its own ({', '.join(files)}): "
            "give a new folder, or an earlier one of these"
        )
    # hidden *.tmp files: what a killed atomic_write_bytes of an earlier version left
    other = sorted(p.name for p in path.iterdir() if p.name not in files and not (p.name[0] == "." and p.name.endswith(".tmp")))
    if other:
        raise ConfigError(
            f"{path} holds other files ({', '.join(other[:5])}{' ...' if len(other) > 5 else ''}); "
            f"{what} replaces the whole folder ({', '.join(files)}), so give a new folder, or an "
            "earlier one of these"
        )


def _remove_orphan_folders(path: Path) -> None:
    """Delete the sibling folders that this machine's killed writers of ``path`` left; the earlier
    folder set aside by one killed between its two renames is put back where it was."""
    host = socket.gethostname()
    for suffix in (".old", ".tmp"):
        for p in path.parent.glob(f".{glob.escape(path.name)}.{glob.escape(host)}-*{suffix}"):
            pid = p.name[len(f".{path.name}.{host}-") : -len(suffix)]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if suffix == ".old" and not path.exists():
                os.rename(p, path)
            else:
                shutil.rmtree(p, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE); False where the system or
    its file system has no such call."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_through_aside(new: Path, path: Path) -> None:
    """``new`` in place of ``path`` by two renames; the old folder, set aside under a name
    :func:`_remove_orphan_folders` knows, is then left in ``new``'s place to be removed."""
    aside = new.with_name(new.name[: -len(".tmp")] + ".old")
    os.rename(path, aside)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(aside, path)
        raise
    os.rename(aside, new)


def partial_npy(path: Path, shape: tuple[int, ...], dtype: Any, *, shared: bool = False) -> np.memmap:
    """A new ``.npy`` memory map to fill, under a temporary name beside ``path`` until
    :func:`publish_npy` moves it there: one name per process, so that concurrent writers of the same
    file (tuning workers sharing a cache) never truncate one another's; with ``shared``, one name the
    ranks of a distributed run all open (:func:`partial_npy_path`) to write their shares."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    partial = partial_npy_path(path, shared)
    needed = int(np.prod(shape)) * np.dtype(dtype).itemsize + 4096  # the data and the .npy header
    if shutil.disk_usage(path.parent).free < needed:
        raise disk_full(path, needed, "this cache file")
    arr = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
    # a memory map over a sparse file dies of SIGBUS (no message) when the disk fills while it is
    # written; reserving the blocks now turns that into an error here
    try:
        with open(partial, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: the check above
            return arr
        del arr
        partial.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, needed, "this cache file") from None
        raise
    return arr


def _remove_orphans(path: Path) -> None:
    """Delete this machine's partial copies of ``path`` whose writer process is gone (killed)."""
    host = socket.gethostname()
    for p in path.parent.glob(f"{path.stem}.{host}-*.partial.npy"):
        pid = p.name[len(f"{path.stem}.{host}-") : -len(".partial.npy")]
        if pid.isdigit() and not _alive(int(pid)):
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def partial_npy_path(path: Path, shared: bool) -> Path:
    tag = "" if shared else f".{socket.gethostname()}-{os.getpid()}"
    return path.with_name(f"{path.stem}{tag}.partial.npy")


def publish_npy(arr: np.memmap, path: Path) -> None:
    """Flush ``arr`` (from :func:`partial_npy`) and rename it to ``path``: readers see a whole file
    or none, and a reader of an earlier copy keeps its own."""
    arr.flush()
    assert arr.filename is not None  # a memory map of a file (partial_npy), never an anonymous one
    os.replace(arr.filename, path)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(
    path: Path,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any] | None = None,
    *,
    before_rename: Callable[[Path], None] | None = None,
) -> None:
    """Write ``tensors`` (+ JSON ``state``) to ``path`` atomically. ``before_rename`` is called with
    the complete temporary file just before it takes ``path``'s place (to record its digest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path)
    os.close(fd)
    try:
        clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        # safetensors writes a temporary file of its own (.tmpXXXXXX, mode 0600) and renames it to tmp
        save_file(clean, tmp, metadata={"tunelab_state": json.dumps(state or {})})
        os.chmod(tmp, file_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename(Path(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            needed = sum(v.numel() * v.element_size() for v in tensors.values())
            raise disk_full(path, needed, "the checkpoint") from None
        raise
    _fsync_dir(path.parent)


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON state of a checkpoint written by :func:`save`."""
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
    except Exception as e:
        raise ModelError(f"checkpoint {path} cannot be read ({e}); it is not a tunelab safetensors checkpoint") from None
    try:
        state = json.loads(meta.get("tunelab_state", "{}"))
    except json.JSONDecodeError as e:
        raise ModelError(
            f"checkpoint {path}: its tunelab_state metadata is not JSON ({e}); the file was edited or written by another program"
        ) from None
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path}: its tunelab_state metadata is {type(state).__name__}, not a JSON object")
    return tensors, state


def load_model_state(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load a full model state dict, failing with the differing keys named."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        lines = [f"{source} does not match the model built from the config:"]
        for what, xs in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if xs:
                lines.append(f"  {what} ({len(xs)}): " + ", ".join(xs[:4]) + (" ..." if len(xs) > 4 else ""))
        lines.append("  (was the checkpoint written with another backbone, head or number of classes?)")
        raise ModelError("\n".join(lines))
    model.load_state_dict(sd)


# --- optimizer state <-> flat tensors + JSON -----------------------------------------------------


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    _match_memory_format(opt)


def _match_memory_format(opt: torch.optim.Optimizer) -> None:
    """Give each restored state tensor (Adam's moments) its parameter's strides: the file holds them
    contiguous, a channels_last convolution's moments were channels_last, and elementwise kernels
    over mixed layouts take another code path that rounds differently (a resumed ResNet drifted by
    1e-6 in the loss)."""
    for p, st in opt.state.items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)
