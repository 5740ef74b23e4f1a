"""fit's checks before it trains: a model's outputs match the data's classes."""

from pathlib import Path

import pytest
import yaml

import tunelab
from tunelab import pipeline
from tunelab.cli import main
from tunelab.config import dump_config
from tunelab.errors import ConfigError


def test_more_outputs_than_the_data_has_classes_is_refused_before_training(tiny_cfg, tmp_path, capsys):
    """Was: an IndexError in the report after training (an output without a class name)."""
    tiny_cfg["model"]["num_classes"] = 12
    with pytest.raises(
        ConfigError,
        match=r"^model.num_classes: 12, but the data has 10 classes \(class0, class1, "
        r"class2, class3, class4, \.\.\.\); a model has one output per class: set "
        r"model.num_classes: data \(or 10\)$",
    ):
        tunelab.fit(tiny_cfg)
    run_dir = tmp_path / "runs" / "tiny"
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg))
    assert main(["fit", str(p)]) == 2
    err = capsys.readouterr().err
    assert "error: model.num_classes: 12, but the data has 10 classes" in err and "Traceback" not in err


def test_a_run_folder_with_more_outputs_than_class_names_is_a_clear_error(tiny_cfg, tmp_path, monkeypatch, capsys):
    """A run an earlier tunelab trained with model.num_classes above the data's classes."""
    tiny_cfg["run"]["baselines"] = False
    tiny_cfg["model"]["num_classes"] = 12
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_outputs", lambda cfg, classes: 12)
        d = tunelab.fit(tiny_cfg).dir
    image = next(Path(tiny_cfg["data"]["train"]).glob("*/*.png"))
    for argv in (["predict", str(d), str(image)], ["evaluate", str(d)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert (
            f"error: {d}/classes.json names 10 classes, but the model has 12 outputs (model.num_classes: 12 in {d}/config.yaml)"
            in err
            and "train the run again with model.num_classes: data" in err
        ), err
    assert main(["report", str(d)]) == 0
    assert main(["fit", "--resume", str(d)]) == 2
    err = capsys.readouterr().err
    assert "error: model.num_classes: 12, but the data has 10 classes" in err and "Traceback" not in err


def test_config_yaml_is_written_when_the_run_starts_and_once_resolved(tiny_cfg, monkeypatch):
    """Was: written after each choice (few-shot, regularization: auto, min_steps, the probe): up to
    five times before training. Now the user's config when the run starts (what a resume before any
    choice reads) and the resolved one once, before training; a resume from a checkpoint writes none."""
    written: list[str] = []
    real = pipeline.write_config

    def counting(run_dir, cfg, **kw):
        written.append(str(run_dir))
        real(run_dir, cfg, **kw)

    monkeypatch.setattr(pipeline, "write_config", counting)
    tiny_cfg["regularization"] = "auto"  # a choice of the data's
    tiny_cfg["stages"][1]["min_steps"] = 40  # stretched epochs: another
    tiny_cfg["data"]["refit"] = "never"  # (a refit writes its own folder's config)
    run = tunelab.fit(tiny_cfg)
    assert written == [str(run.dir)] * 2
    text = (run.dir / "config.yaml").read_text()
    assert text == dump_config(run.config) and yaml.safe_load(text)["stages"][1]["epochs"] > 3  # the resolved config
    written.clear()
    tunelab.fit(resume=run.dir)  # from its last checkpoint: every choice is in config.yaml already
    assert written == []
