import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import tunelab
from tunelab import checkpoint as ckpt
from tunelab.engine.objectives import contrastive_partners
from tunelab.engine.optim import make_optimizer
from tunelab.errors import ConfigError, ModelError


def test_fit_writes_a_complete_run_folder(tiny_cfg):
    run = tunelab.fit(tiny_cfg)
    d = run.dir
    for name in (
        "config.yaml",
        "classes.json",
        "metrics.jsonl",
        "metrics.json",
        "model.safetensors",
        "log.txt",
        "checkpoints/last.safetensors",
        "checkpoints/last.json",
        "checkpoints/best.safetensors",
    ):
        assert (d / name).is_file(), name
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    test = run.metrics["test"]
    assert set(test) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "loss"}
    assert len(test["confusion_matrix"]) == 10 and sum(map(sum, test["confusion_matrix"])) == test["n"]
    # the saved config reloads to the same config
    assert tunelab.load_config(d / "config.yaml") == run.config
    # reloaded model gives the same predictions
    again = tunelab.load_run(d)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    run.model.eval()
    with torch.no_grad():
        assert torch.equal(again.model(x), run.model(x))


def test_stage_lr_scale_resolves_against_previous_stage(tiny_cfg):
    cfg = tunelab.load_config(None, [])
    assert cfg.stage_lrs()[1] == pytest.approx(cfg.stage_lrs()[0] * 0.1)


def test_weight_decay_skips_biases_and_norm_weights(tiny_cfg):
    run = tunelab.fit({**tiny_cfg, "stages": [{"train": "all", "epochs": 0, "lr": 1e-3}]})
    opt = make_optimizer(run.model, run.config.stages[0], 1e-3)
    for g in opt.param_groups:
        dims = {p.ndim for p in g["params"]}
        assert (g["weight_decay"] == 0.0) == (dims == {1})


def test_unknown_hook_name_is_an_error(tiny_cfg):
    with pytest.raises(ConfigError, match=r"on_epoch_ends.*valid: on_stage_start"):
        tunelab.fit(tiny_cfg, hooks={"on_epoch_ends": lambda **k: None})


def test_early_stopping_stops_and_restores_best(tiny_cfg):
    tiny_cfg["stages"] = [
        {"train": "all", "epochs": 30, "lr": 0.5, "optimizer": "sgd", "early_stopping": {"metric": "val_loss", "patience": 2}}
    ]
    run = tunelab.fit(tiny_cfg)
    rows = run.history
    assert len(rows) < 30
    best = min(r["val_loss"] for r in rows)
    assert run.metrics["val"]["loss"] == pytest.approx(best, rel=1e-5)


def test_early_stopping_without_validation_set_is_an_error(tiny_cfg):
    tiny_cfg["data"]["val_split"] = 0.0
    tiny_cfg["stages"] = [{"train": "head", "epochs": 2, "lr": 1e-3, "early_stopping": {"patience": 1}}]
    with pytest.raises(ConfigError, match=r"stages\.0\.early_stopping needs a validation set"):
        tunelab.fit(tiny_cfg)


def test_checkpoint_written_for_other_config_is_rejected(tiny_cfg, tmp_path):
    run = tunelab.fit({**tiny_cfg, "stages": [{"train": "head", "epochs": 1, "lr": 1e-3}]})
    # the same folder, but the config now asks for a different head
    text = (run.dir / "config.yaml").read_text().replace("hidden: []", "hidden:\n    - units: 16")
    (run.dir / "config.yaml").write_text(text)
    with pytest.raises(ModelError, match=r"model.safetensors does not match the model built from the config"):
        tunelab.load_run(run.dir)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    ckpt.save(path, {"w": torch.ones(3)}, {"epoch": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "replace", boom)
    with pytest.raises(OSError):
        ckpt.save(path, {"w": torch.zeros(3)}, {"epoch": 2})
    tensors, state = ckpt.load(path)
    assert state == {"epoch": 1} and torch.equal(tensors["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left behind


def _fit_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tunelab", "fit", str(config), *extra]


def test_sigkill_mid_stage_two_then_resume_matches_uninterrupted_run(tiny_cfg, tmp_path):
    """Acceptance: kill -9 during stage 2, `fit --resume`, same final metrics as a clean run."""
    import yaml

    tiny_cfg["stages"][1]["epochs"] = 12
    tiny_cfg["model"]["head"] = {"dropout": 0.3}  # dropout draws from the RNG: resume must restore it
    cfg_path = tmp_path / "cfg.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    tiny_cfg["run"]["name"] = "clean"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    subprocess.run(_fit_cmd(cfg_path), check=True, env=env, capture_output=True)
    clean = json.loads((tmp_path / "runs" / "clean" / "metrics.json").read_text())

    tiny_cfg["run"]["name"] = "killed"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    run_dir = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(_fit_cmd(cfg_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        metrics = run_dir / "metrics.jsonl"
        if metrics.is_file():
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            if any(r["stage"] == 1 and r["epoch"] >= 2 for r in rows):
                proc.send_signal(signal.SIGKILL)
                killed_at = rows[-1]
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed"
    assert not (run_dir / "metrics.json").exists()

    out = subprocess.run(
        [sys.executable, "-m", "tunelab", "fit", "--resume", str(run_dir)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "resuming stage 2" in out.stdout
    resumed = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        assert abs(resumed[split]["accuracy"] - clean[split]["accuracy"]) <= 1e-6
        assert resumed[split]["loss"] == pytest.approx(clean[split]["loss"], abs=1e-5)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [(0, 0), (0, 1)] + [(1, e) for e in range(12)]


@pytest.mark.slow
def test_compile_trains_the_same_numbers(tiny_cfg):
    """run.compile compiles block by block; the cached tail and checkpoints work as without it."""
    tiny_cfg["stages"] = [{"train": ["head", {"last_blocks": 1}], "epochs": 1, "lr": 1e-3}]
    tiny_cfg["cache"] = {"autocast": "off"}
    losses = {}
    for compiled in (False, True):
        tiny_cfg["run"].update(name=f"compile-{compiled}", compile=compiled)
        run = tunelab.fit(tiny_cfg)
        losses[compiled] = [r["train_loss"] for r in run.history] + [run.metrics["test"]["loss"]]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert "torch.compile:" in (run.dir / "log.txt").read_text()
    assert all("_orig_mod" not in k for k in tunelab.load_run(run.dir).model.state_dict())


def test_precision_bf16_autocasts_training_and_auto_keeps_fp32_on_cpu(tiny_cfg):
    """run.precision: auto is fp32 on a CPU (bf16 training measured slower there); bf16 runs the
    forward passes under autocast and still learns the same thing, to bf16 precision."""
    from tunelab.engine.device import autocast_bf16

    assert autocast_bf16("auto", torch.device("cpu")) is False
    assert autocast_bf16("bf16", torch.device("cpu")) is True and autocast_bf16("fp32", torch.device("cuda")) is False
    seen = []
    tiny_cfg["run"]["name"] = "fp32"
    ref = tunelab.fit(tiny_cfg)
    tiny_cfg["run"]["name"] = "bf16"
    tiny_cfg["run"]["precision"] = "bf16"
    run = tunelab.fit(tiny_cfg, hooks={"on_stage_start": lambda trainer, stage: seen.append(trainer.bf16)})
    assert seen == [True, True]
    for a, b in zip(ref.history, run.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05) and b["train_loss"] != a["train_loss"]


def test_contrastive_partners_are_other_examples_half_of_the_same_class():
    labels = torch.tensor([0] * 30 + [1] * 50 + [2] * 20 + [3])  # class 3 has one example: no positive partner
    epochs = contrastive_partners(labels, 4, seed=7)
    assert len(epochs) == 4 and all(torch.equal(a, b) for a, b in zip(epochs, contrastive_partners(labels, 4, seed=7)))
    for partner in epochs:
        assert (partner != torch.arange(len(labels))).all() and partner.min() >= 0 and partner.max() < len(labels)
        same = labels[partner] == labels
        assert 0.35 < same.float().mean() < 0.65 and not same[-1]


def test_a_non_finite_loss_stops_the_run_keeping_the_last_good_checkpoint(tiny_cfg, tmp_path, capsys):
    """`lr: .inf` trained 80 epochs of NaN and exited 0. The config now refuses inf; a huge finite rate
    (1e30) still makes the loss inf/nan within a few steps: the run stops there, names the stage, epoch
    and rate, exits 2, and its folder holds the checkpoint of the last finished epoch."""
    from safetensors.torch import load_file

    from tunelab.cli import main
    from tunelab.errors import TrainingError

    tiny_cfg["run"]["baselines"] = False
    tiny_cfg["stages"] = [
        {"name": "head", "train": "head", "epochs": 2, "lr": 1e-2},
        {"name": "all", "train": "all", "epochs": 3, "lr": 1e30},
    ]
    run_dir = tmp_path / "runs" / "tiny"
    with pytest.raises(TrainingError) as e:
        tunelab.fit(tiny_cfg)
    msg = str(e.value)
    assert msg.startswith("stage 2/2 'all', epoch 1, step ") and " at learning rate " in msg
    assert "(stage rate 1e+30): training diverged" in msg and "--set stages.1.lr=1e+29" in msg
    assert msg.endswith(f"{run_dir}/checkpoints keeps the run as it was at the end of its last finished epoch")
    last = json.loads((run_dir / "checkpoints" / "last.json").read_text())
    assert (last["stage"], last["epoch"]) == (0, 1)  # the head stage's last epoch, before the rate of 1e30
    weights = load_file(str(run_dir / "checkpoints" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for k, v in weights.items() if k.startswith("model.") and v.is_floating_point())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows] == [(0, 0), (0, 1)]
    assert all(math.isfinite(r["train_loss"]) for r in rows) and not (run_dir / "model.safetensors").exists()

    # the command line: exit 2, the message, no traceback
    p = tmp_path / "c.yaml"
    p.write_text(json.dumps({**tiny_cfg, "run": {**tiny_cfg["run"], "name": "cli"}}))
    assert main(["fit", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stage 2/2 'all', epoch 1, step ") and "training diverged" in err
    assert "Traceback" not in err
