"""Data-parallel training: 2 processes on the CPU (gloo), launched by torchrun as a user would,
against one process with the same global batch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
import yaml

import tunelab
from tunelab.checkpoint import load
from tunelab.distributed import Dist

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "tunelab", "fit", *args]


def _deterministic(cfg: dict[str, Any], tmp_path: Path, name: str) -> Path:
    """No dropout, so that one process and two draw nothing from their random generators while
    training (each rank has its own; augmentation is cached with per-batch seeds)."""
    cfg["model"]["head"] = {"dropout": 0.0, "hidden": []}
    cfg["data"]["samples_per_class"] = 9  # 90 images: the last global batch of 16 is 10, split 5 + 5
    cfg["run"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _max_weight_diff(a: Path, b: Path) -> float:
    ta, _ = load(a / "model.safetensors")
    tb, _ = load(b / "model.safetensors")
    assert ta.keys() == tb.keys()
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta)


def _kill_tree(pid: int) -> None:
    """SIGKILL the launcher and every rank. torchrun starts each rank in a session of its own, so
    killing the launcher's process group leaves the ranks running (and rank 0 still writing
    checkpoints while the test reads them)."""
    launcher = psutil.Process(pid)
    tree = [*launcher.children(recursive=True), launcher]
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("cache", [True, False], ids=["cached-tail", "whole-model"])
def test_two_processes_train_the_same_model_as_one(tiny_cfg, tmp_path, cache):
    """Acceptance: 2 gloo processes with the same global batch give the single-process result
    (weights, per-epoch losses, final metrics), and only rank 0 writes the run folder."""
    tiny_cfg["cache"] = {"enabled": cache}
    if not cache:
        tiny_cfg["regularization"] = {"augment": "none"}  # augmenting every step draws per-rank randomness
    one = tunelab.fit(_deterministic(tiny_cfg, tmp_path, "one"))
    two_cfg = _deterministic(tiny_cfg, tmp_path, "two")
    out = subprocess.run(_torchrun(str(two_cfg)), env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    two = tmp_path / "runs" / "two"

    assert _max_weight_diff(one.dir, two) < 1e-5
    r1, r2 = _rows(one.dir), _rows(two)
    assert [(r["stage"], r["epoch"]) for r in r2] == [(r["stage"], r["epoch"]) for r in r1]  # one writer
    for a, b in zip(r1, r2):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["train_accuracy"] == pytest.approx(a["train_accuracy"], abs=1e-9)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
    final = json.loads((two / "metrics.json").read_text())
    assert final["processes"] == 2
    for split in ("val", "test"):
        assert final[split]["accuracy"] == pytest.approx(one.metrics[split]["accuracy"], abs=1e-9)
        assert final[split]["loss"] == pytest.approx(one.metrics[split]["loss"], abs=1e-5)
        assert final[split]["confusion_matrix"] == one.metrics[split]["confusion_matrix"]
    log = (two / "log.txt").read_text()
    assert log.count("run folder:") == 1 and "distributed: 2 processes (gloo backend), global batch 16" in log
    assert out.stdout.count("final test accuracy") == 1  # rank 1 prints no summary
    assert (two / "report.html").is_file() and not list(two.glob("cache/*.partial.npy"))
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name not in ("one", "two")]  # one folder, named by rank 0
    if cache:
        assert "cache: pooled features" in log and log.count("computed") == 1  # one pass, shared by the ranks
    assert not (two / "decoded").exists() and not (two / "cache").exists()  # the shared stores go at the end


def test_two_processes_resume_after_kill(tiny_cfg, tmp_path):
    """kill -9 of every process during stage 2, then a resume on 2 processes: the same result as
    an uninterrupted 2-process run, dropout included (each rank's generator is checkpointed)."""
    tiny_cfg["stages"][1]["epochs"] = 10
    tiny_cfg["model"]["head"] = {"dropout": 0.3}
    tiny_cfg["run"]["name"] = "clean"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_cfg))
    out = subprocess.run(_torchrun(str(path)), env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    clean = json.loads((tmp_path / "runs" / "clean" / "metrics.json").read_text())

    run_dir = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        _torchrun(str(path), "--set", "run.name=killed"),
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = False
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "metrics.jsonl").is_file() and any(r["stage"] == 1 and r["epoch"] >= 2 for r in _rows(run_dir)):
            _kill_tree(proc.pid)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed, "the run finished before it could be killed"
    tensors, state = load(run_dir / "checkpoints" / "last.safetensors")  # both ranks' generators, not copies
    assert "rank1" in state["rng"] and not torch.equal(tensors["rng.torch"], tensors["rank1.rng.torch"])

    out = subprocess.run(_torchrun("--resume", str(run_dir)), env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming stage 2" in out.stdout
    resumed = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        assert resumed[split]["accuracy"] == pytest.approx(clean[split]["accuracy"], abs=1e-9)
        assert resumed[split]["loss"] == pytest.approx(clean[split]["loss"], abs=1e-5)
    assert [(r["stage"], r["epoch"]) for r in _rows(run_dir)] == [(0, 0), (0, 1)] + [(1, e) for e in range(10)]


def test_shards_cover_every_row_once_in_whole_batches():
    for n, multiple, world in [(90, 16, 2), (7, 4, 3), (3, 8, 4), (0, 8, 2), (100, 1, 8)]:
        shards = [Dist(r, world).shard(n, multiple) for r in range(world)]
        assert [i for s in shards for i in s] == list(range(n))
        assert all(s.start % multiple == 0 for s in shards if len(s))


def test_batch_split_gives_every_rank_a_share():
    idx = torch.arange(10)
    parts = [Dist(r, 4).split_batch(idx) for r in range(4)]
    assert torch.equal(torch.cat(parts), idx) and [len(p) for p in parts] == [3, 3, 2, 2]
    assert torch.equal(Dist().split_batch(idx), idx)


def test_two_processes_text(tiny_text_cfg, tmp_path):
    """A text run on 2 processes: the tokenized and cached encoder outputs are made once, the head
    stage matches one process exactly (nothing random in it), the top-layer stage trains under DDP
    (every trainable parameter is used: mean pooling drops the encoder's pooler) and rank 0 alone writes."""
    tiny_text_cfg["model"]["head"] = {"dropout": 0.0}
    tiny_text_cfg["data"]["batch_size"] = 16
    tiny_text_cfg["run"]["name"] = "one"
    one = tunelab.fit(tiny_text_cfg)
    tiny_text_cfg["run"]["name"] = "two"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(tiny_text_cfg))
    out = subprocess.run(_torchrun(str(path)), env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    two = tmp_path / "runs" / "two"
    r1, r2 = _rows(one.dir), _rows(two)
    assert [(r["stage"], r["epoch"]) for r in r2] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for a, b in zip(r1[:2], r2[:2]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
    log = (two / "log.txt").read_text()
    assert log.count("cache: ") == 2 and "reused" not in log.split("cache: ")[1].split("\n")[0]
    assert json.loads((two / "metrics.json").read_text())["processes"] == 2
