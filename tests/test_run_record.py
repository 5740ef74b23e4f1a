"""A run folder's record of its own files (RUN_DIR/run.json): a resume refuses a config.yaml edited
by hand, and a model or checkpoint copied in from another run is refused where it is loaded."""

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import tunelab
from conftest import TINY, synthetic_images
from tunelab import checkpoint as ckpt
from tunelab.cli import main
from tunelab.config import build_config
from tunelab.distributed import Dist
from tunelab.engine.resume import restore_best
from tunelab.engine.stopping import Stopper
from tunelab.errors import RunError
from tunelab.run_record import check_config, check_model, read_record, record_model, write_config


def _fit(root, **run):
    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(root), baselines=False, **run)
    cfg["stages"] = [{"train": "head", "epochs": 2, "lr": 1e-2}, {"train": "head", "epochs": 2, "lr": 1e-3}]
    return tunelab.fit(cfg).dir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-stage run; tests work on copies of it."""
    return _fit(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """Another run with the same shapes (another seed): its files would load into the first."""
    return _fit(tmp_path_factory.mktemp("other"), seed=1)


def _copy(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / "copy")


def _edit(raw, key, value):
    *path, last = key.split(".")
    node = raw
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    old, node[last] = node[last], value
    return old


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data.train", "IMAGES"),
        ("stages.0.lr", 0.05),
        ("data.image_size", 24),
        ("run.seed", 7),
        ("stages.1.epochs", 1),
    ],
    ids=["data", "lr", "image-size", "seed", "fewer-epochs"],
)
def test_resume_refuses_an_edited_config_naming_the_keys_and_how_to_start_a_new_run(
    finished, tmp_path, image_folder, key, value, capsys
):
    """Was: used silently (other data, new splits), or for fewer epochs: 'delete the checkpoints folder'."""
    d = _copy(finished, tmp_path)
    value = str(image_folder) if value == "IMAGES" else value
    raw = yaml.safe_load((d / "config.yaml").read_text())
    old = _edit(raw, key, value)
    (d / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    kept = {p: (d / p).read_bytes() for p in ("metrics.jsonl", "metrics.json", "model.safetensors")}
    assert main(["fit", "--resume", str(d)]) == 2
    err = capsys.readouterr().err
    assert (
        f"error: {d}/config.yaml was changed after the run wrote it:\n  {key}: {json.dumps(old)} -> "
        f"{json.dumps(value)}\nA resume continues a run with the config it was trained with." in err
    ), err
    assert f"start a new run from the edited file: `tunelab fit {d}/config.yaml --set run.name=tiny-new`" in err
    assert "Traceback" not in err and "delete" not in err
    assert all((d / p).read_bytes() == b for p, b in kept.items())  # nothing of the run touched


def test_the_suggested_command_starts_a_new_run_from_the_edited_config(finished, tmp_path, capsys):
    d = _copy(finished, tmp_path)
    (d / "config.yaml").write_text((d / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.002"))
    assert main(["fit", "--resume", str(d)]) == 2
    command = capsys.readouterr().err.split("`")[-2]
    assert command == f"tunelab fit {d}/config.yaml --set run.name=tiny-new"
    assert main(command.split()[1:]) == 0
    new = finished.parent / "tiny-new"
    assert f"run folder: {new}" in capsys.readouterr().out
    assert tunelab.load_config(new / "config.yaml").stages[1].lr == 0.002


def test_an_unedited_or_only_reformatted_config_resumes(finished, tmp_path):
    """The run's own rewrites of config.yaml (here: augment resolved by the probe step) are no edit;
    nor is a comment."""
    d = _copy(finished, tmp_path)  # a copied folder is the same run: it resumes
    assert read_record(d)["config_before"] not in (None, read_record(d)["config"])
    (d / "config.yaml").write_text("# tried lr 0.01 first\n" + (d / "config.yaml").read_text())
    run = tunelab.fit(resume=d)
    assert [(r["stage"], r["epoch"]) for r in run.history] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_kill_between_the_record_and_the_config_write_still_resumes(tmp_path):
    """Each config.yaml write is recorded first; the config before it stays accepted, so a kill
    between the two writes leaves a folder that checks."""
    a = build_config({"stages": [{"epochs": 2, "lr": 1e-3}]})
    b = build_config({"stages": [{"epochs": 4, "lr": 1e-3}]})
    write_config(tmp_path, a)
    write_config(tmp_path, b)
    check_config(tmp_path, a)  # killed after the record, before config.yaml: the old file is still there
    check_config(tmp_path, b)
    with pytest.raises(RunError, match=r"stages.0.epochs: 4 -> 3\n"):
        check_config(tmp_path, build_config({"stages": [{"epochs": 3, "lr": 1e-3}]}))


def test_interrupted_and_finished_text_runs_resume_past_their_own_rewrites(tiny_text_cfg):
    """A text run writes config.yaml again for its lexical blend's share; a resume takes that for the
    run's own rewrite, interrupted or finished."""

    def stop(trainer, stage, epoch, metrics):
        if (stage, epoch) == (1, 0):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tunelab.fit(tiny_text_cfg, hooks={"on_epoch_end": stop})
    d = Path(tiny_text_cfg["run"]["dir"]) / "tiny-text"
    run = tunelab.fit(resume=d)
    assert [(r["stage"], r["epoch"]) for r in run.history] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert "lexical" in run.metrics and read_record(d)["config"] == (d / "config.yaml").read_text()
    again = tunelab.fit(resume=d)  # finished, its share written
    assert again.metrics["test"]["n"] == run.metrics["test"]["n"]


def test_a_model_copied_from_another_run_is_refused_where_it_is_loaded(finished, other, tmp_path, capsys):
    """Was: loaded without a word (same shapes)."""
    d = _copy(finished, tmp_path)
    tunelab.load_run(d)  # the run's own file, copied with its folder, loads
    shutil.copy(other / "model.safetensors", d / "model.safetensors")
    with pytest.raises(
        RunError,
        match=rf"{d}/model.safetensors is not the file this run wrote: its SHA-256 is "
        r"[0-9a-f]{16}\.\.\., the run recorded [0-9a-f]{16}\.\.\. in .*run.json",
    ):
        tunelab.load_run(d)
    image = next(synthetic_images().glob("*/*.png"))
    for argv in (["predict", str(d), str(image)], ["evaluate", str(d)], ["export", str(d), "--format", "timm"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "model.safetensors is not the file this run wrote" in err and "Traceback" not in err, argv
        assert f"write it again from the run's checkpoints with `tunelab fit --resume {d}`" in err
    tunelab.fit(resume=d)  # as the message says: the resume writes the run's own model again
    tunelab.load_run(d)


def test_a_checkpoint_copied_from_another_run_is_refused_by_resume(finished, other, tmp_path, capsys):
    d = _copy(finished, tmp_path)
    shutil.copy(other / "checkpoints" / "last.safetensors", d / "checkpoints" / "last.safetensors")
    assert main(["fit", "--resume", str(d)]) == 2
    err = capsys.readouterr().err
    assert f"error: {d}/checkpoints/last.safetensors belongs to another run (run id " in err
    assert "it was copied from another run folder" in err and "Traceback" not in err


def test_a_best_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt.save(tmp_path / "best.safetensors", {"w": torch.ones(2)}, {"run_id": "other"})
    stopper = Stopper("val_loss", "min", None)
    with pytest.raises(RunError, match=r"best.safetensors belongs to another run \(run id other; this run's is mine\)"):
        restore_best(tmp_path, torch.nn.Linear(1, 2), Dist(), 0, stopper, "mine")


def test_the_model_digest_is_recorded_before_the_file_is_renamed(tmp_path):
    """A kill between the record and the rename leaves the old model, whose digest stays accepted."""
    path = tmp_path / "model.safetensors"
    ckpt.save(path, {"w": torch.ones(2)}, before_rename=lambda tmp: record_model(tmp_path, tmp))
    old = path.read_bytes()
    ckpt.save(tmp_path / "other.safetensors", {"w": torch.zeros(2)})
    record_model(tmp_path, tmp_path / "other.safetensors")  # the record of a save that was killed
    check_model(tmp_path, path)
    path.write_bytes(old[:-1] + b" ")
    with pytest.raises(RunError, match="is not the file this run wrote"):
        check_model(tmp_path, path)


def test_a_key_added_to_tunelab_since_the_run_began_is_no_edit(tmp_path):
    """A run written by an earlier tunelab lacks a newer key in its record; the default fills it in."""
    cfg = build_config({"stages": [{"epochs": 2, "lr": 1e-3}]})
    write_config(tmp_path, cfg)
    record = read_record(tmp_path)
    raw = yaml.safe_load(record["config"])
    del raw["data"]["refit"]  # as if data.refit had come in a later version
    record["config"] = yaml.safe_dump(raw, sort_keys=False)
    (tmp_path / "run.json").write_text(json.dumps(record))
    check_config(tmp_path, cfg)
