"""A full disk, on a real small file system (a tmpfs mounted for the test): a message with the size
needed, never a traceback or a bus error, no partial file left, and nothing of the run lost."""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from tunelab import checkpoint as ckpt
from tunelab.cli import main
from tunelab.engine.store import FeatureStore
from tunelab.errors import DiskFullError
from tunelab.runs import read_history


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 1200 KiB under tmp_path (mounting needs root: skipped without it)."""
    path = tmp_path / "disk"
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    yield SmallDisk(path)
    subprocess.run(["umount", "-l", str(path)], check=False)


def test_checkpoint_that_does_not_fit_says_how_much_it_needs_and_resumes_later(tiny_cfg, small_disk, tmp_path, capsys):
    """Was: a raw SafetensorError traceback. The first epoch's checkpoints (best and last, about 430
    KiB each) fit, the second epoch's do not (an atomic write holds the old and the new file)."""
    tiny_cfg["run"].update(dir=str(small_disk.path), baselines=False)
    tiny_cfg["stages"] = [{"train": "head", "epochs": 3, "lr": 1e-3}]
    assert main(["fit", str(_write(tmp_path / "c.yaml", tiny_cfg))]) == 2
    err = capsys.readouterr().err
    run_dir = small_disk.path / "tiny"
    assert re.search(
        rf"error: no space left on device for {run_dir}/checkpoints/(last|best).safetensors: the "
        r"checkpoint needs 4\d\d\.\d KiB, \d+\.\d KiB free on the disk of ",
        err,
    ), err
    assert f"continue the run with `tunelab fit --resume {run_dir}`" in err
    assert "Traceback" not in err and not list(run_dir.rglob("*.tmp"))
    assert read_history(run_dir)[0]["epoch"] == 0  # the first epoch is kept
    small_disk.resize("64m")
    run = tunelab.fit(resume=run_dir)
    assert [r["epoch"] for r in read_history(run.dir)] == [0, 1, 2] and "test" in run.metrics


def _write(path, cfg):
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cache_file_that_does_not_fit_is_refused_before_it_is_mapped(small_disk):
    store = FeatureStore(small_disk.path / "cache", max_memory_gb=0)
    with pytest.raises(DiskFullError, match=r"this cache file needs 2\.0 MiB, .* free on the disk of"):
        store.create("k", (512, 1024), torch.float32)
    assert not list((small_disk.path / "cache").iterdir())  # no partial file left behind
    t = store.create("k", (64, 1024), torch.float32)  # 256 KiB fits
    t.fill_(1.0)
    store.commit("k")
    assert float(store.lookup("k", torch.float32).sum()) == 64 * 1024


def test_fit_with_its_cache_on_a_full_disk_stops_with_a_message(tiny_cfg, small_disk, tmp_path, capsys):
    """Was: Bus error (rc 135), no message, partial cache files left behind."""
    tiny_cfg["run"]["baselines"] = False
    tiny_cfg["cache"] = {"folder": str(small_disk.path), "max_memory_gb": 0, "views": 8}
    (small_disk.path / "filler").write_bytes(b"\0" * 1100 * 1024)
    assert main(["fit", str(_write(tmp_path / "c.yaml", tiny_cfg))]) == 2
    err = capsys.readouterr().err
    assert "this cache file needs" in err and "Traceback" not in err
    assert not list(small_disk.path.glob("*.partial.npy"))


def test_partial_cache_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / "key.npy"
    import socket

    orphan = tmp_path / f"key.{socket.gethostname()}-{dead.pid}.partial.npy"
    live = tmp_path / f"key.{socket.gethostname()}-{os.getppid()}.partial.npy"
    orphan.write_bytes(b"half")
    live.write_bytes(b"half")
    arr = ckpt.partial_npy(tmp_path / "other.npy", (4,), np.float32)  # another key: neither is touched
    assert orphan.exists()
    del arr
    ckpt.partial_npy(path, (4,), np.float32)
    assert not orphan.exists() and live.exists()


def _fill(path: Path) -> None:
    """Fill the disk of ``path`` to the last byte."""
    with open(path / "filler", "ab") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_while_the_log_is_written_stops_the_run_with_one_message_and_it_resumes(tiny_cfg, small_disk, capsys):
    """Was: 160 '--- Logging error ---' tracebacks from logging, and the run went on without its log."""
    import logging

    small_disk.resize("64m")
    tiny_cfg["run"].update(dir=str(small_disk.path), baselines=False)
    tiny_cfg["stages"] = [{"train": "head", "epochs": 3, "lr": 1e-3}]
    run_dir = small_disk.path / "tiny"

    def report(trainer, stage, epoch, metrics):  # a hook's report, on a disk just filled
        if epoch == 0:
            _fill(small_disk.path)
            # on a tmpfs an append within the file's last page still fits: a line longer than a page
            logging.getLogger("tunelab").info("epoch report " + "x" * 8192)

    with pytest.raises(
        DiskFullError,
        match=rf"^no space left on device for {run_dir}/log.txt: a line of the log needs "
        rf".*Nothing is lost: once there is room, continue the run with `tunelab "
        rf"fit --resume {run_dir}`$",
    ):
        tunelab.fit(tiny_cfg, hooks={"on_epoch_end": report})
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    (small_disk.path / "filler").unlink()
    run = tunelab.fit(resume=run_dir)
    assert [r["epoch"] for r in run.history] == [0, 1, 2]


def test_a_metrics_row_that_does_not_fit_is_a_disk_full_error_and_leaves_no_partial_row(small_disk):
    from tunelab.engine.writer import append_metrics

    _fill(small_disk.path)
    path = small_disk.path / "metrics.jsonl"
    with pytest.raises(DiskFullError, match=rf"no space left on device for {path}: the epoch's row needs \d+ bytes"):
        append_metrics(path, {"stage": 0, "epoch": 0, "train_loss": 1.0})
    assert read_history(small_disk.path) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)], ids=["umask-022", "umask-077"])
def test_every_file_a_run_writes_follows_the_umask(tiny_cfg, tmp_path, umask, mode):
    """Was: models, reports, features 0600 (tempfile.mkstemp, safetensors' own temporary file)
    beside logs 0644."""
    tiny_cfg["run"]["baselines"] = False
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    old = os.umask(umask)
    try:
        run = tunelab.fit(tiny_cfg)
        tunelab.export(run.dir, "timm", check=4)
        ckpt.atomic_write_bytes(tmp_path / "features.npy", b"\x93NUMPY")
    finally:
        os.umask(old)
    files = [p for p in run.dir.rglob("*") if p.is_file()] + [tmp_path / "features.npy"]
    names = {p.name for p in files}
    assert {
        "model.safetensors",
        "last.safetensors",
        "metrics.json",
        "report.html",
        "log.txt",
        "config.yaml",
        "run.json",
        "README.md",
    } <= names
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in files} == {str(p): oct(mode) for p in files}
