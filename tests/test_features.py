"""tunelab extract: pooled features of images and texts, with their files and labels, from a config
or a finished run."""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import tunelab
from conftest import TINY, text_rows, write_text_csv
from tunelab.api import load_run
from tunelab.cli import main
from tunelab.features import Features
from tunelab.vision.data import decode_file


def _config(tmp_path: Path, cfg: dict) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_config_backbone_features_of_a_class_folder_keep_files_and_labels(image_folder, tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["data"]["image_size"] = 32
    feats = tunelab.extract(_config(tmp_path, cfg), image_folder, device="cpu")
    assert feats.classes == ["cat", "dog", "fox"] and feats.features.dtype == np.float32
    assert feats.features.shape[0] == 18 and len(feats.items) == 18
    for item, y in zip(feats.items, feats.labels):
        assert Path(item).parent.name == feats.classes[y]
    assert np.isfinite(feats.features).all() and feats.features.std(0).max() > 0


def test_run_features_are_what_its_classifier_reads(image_run, image_folder):
    """The run's linear head on the extracted features gives the run's own logits."""
    feats = tunelab.extract(image_run, image_folder, device="cpu")
    run = load_run(image_run)
    images = torch.stack([decode_file(f, run.config.data.image_size) for f in feats.items])
    with torch.inference_mode():
        logits = run.model(images).numpy()
    fc = run.model.head.fc
    from_features = feats.features @ fc.weight.detach().numpy().T + fc.bias.detach().numpy()
    # extraction runs in bf16 where the CPU gains by it, the reference in fp32
    assert np.abs(from_features - logits).max() < 0.05 * (1 + np.abs(logits).max())
    assert (from_features.argmax(1) == logits.argmax(1)).mean() > 0.9


def test_a_flat_folder_is_unlabelled_and_save_writes_npy_index_and_meta(image_run, image_folder, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(image_folder.rglob("*.png"))[:5]:
        shutil.copy(f, flat / f"{f.parent.name}-{f.name}")
    out = tmp_path / "feats"
    feats = tunelab.extract(image_run, flat, out=out)
    assert feats.classes == [] and (feats.labels == -1).all()
    assert np.array_equal(np.load(out / "features.npy"), feats.features)
    rows = list(csv.DictReader((out / "index.csv").read_text().splitlines()))
    assert [r["item"] for r in rows] == feats.items and rows[0]["label"] == "-1" and rows[0]["class"] == ""
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rows"] == 5 and meta["dim"] == feats.features.shape[1] and meta["model"] == str(image_run)


def test_text_features_from_a_table_and_from_a_plain_text_file(tiny_text_cfg, tmp_path):
    cfg_path = _config(tmp_path, tiny_text_cfg)
    table = write_text_csv(tmp_path / "more.csv", text_rows(4, seed=3))
    feats = tunelab.extract(cfg_path, table)
    assert feats.classes == ["neg", "pos"] and list(feats.labels) == [0] * 4 + [1] * 4
    assert feats.features.shape == (8, 32)  # the tiny encoder's hidden size
    lines = tmp_path / "texts.txt"
    lines.write_text("a great film\n\nboring and dull\n")
    plain = tunelab.extract(cfg_path, lines)
    assert plain.items == [f"{lines}:1", f"{lines}:3"] and (plain.labels == -1).all()


def test_cli_extract_writes_the_folder(image_run, image_folder, tmp_path, capsys):
    assert main(["extract", str(image_run), str(image_folder), "--out", str(tmp_path / "f"), "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "18 x" in out and "(18 labelled, 3 classes)" in out
    assert (tmp_path / "f" / "features.npy").is_file()
    assert main(["extract", str(image_run), str(tmp_path / "missing"), "--out", str(tmp_path / "g")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- the output folder is written whole -------------------------------------------------------


def _features(scale: float) -> Features:
    return Features(
        np.full((3, 4), scale, dtype=np.float32),
        ["a.png", "b.png", "c.png"],
        np.array([0, 1, -1]),
        ["cat", "dog"],
        f"model-{scale}",
    )


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_save_failing_at_its_second_file_leaves_the_old_output_and_a_rerun_succeeds(tmp_path, monkeypatch):
    from tunelab import checkpoint

    out = tmp_path / "feats"
    _features(1.0).save(out)
    old = _contents(out)
    _features(2.0).save(tmp_path / "reference")
    new = _contents(tmp_path / "reference")
    real, calls = checkpoint.write_synced, []

    def dies_at_the_second(path: Path, data: bytes) -> None:
        calls.append(path.name)
        if len(calls) == 2:
            assert _contents(out) == old  # what a kill here would leave
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_synced", dies_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        _features(2.0).save(out)
    assert _contents(out) == old and sorted(p.name for p in tmp_path.iterdir()) == ["feats", "reference"]
    monkeypatch.setattr(checkpoint, "write_synced", real)
    _features(2.0).save(out)
    assert _contents(out) == new and set(old) == set(new) == {"features.npy", "index.csv", "meta.json"}


KILL = """
import os, sys
from pathlib import Path
import numpy as np
from tunelab import checkpoint
from tunelab.features import Features

point, out = sys.argv[1], Path(sys.argv[2])
if point == "second write":
    real_write, writes = checkpoint.write_synced, []
    def write(path, data):
        writes.append(path)
        if len(writes) == 2:
            os._exit(9)
        real_write(path, data)
    checkpoint.write_synced = write
elif point == "between the renames":
    checkpoint._exchange = lambda a, b: False  # a system without an atomic swap
    real_rename = os.rename
    def rename(a, b):
        real_rename(a, b)
        if str(b).endswith(".old"):
            os._exit(9)
    os.rename = rename
else:  # "after the swap": the old folder not yet removed
    real_rmtree = checkpoint.shutil.rmtree
    def rmtree(p, ignore_errors=False):
        if Path(p).exists() and Path(p).name.endswith(".tmp"):
            os._exit(9)
        real_rmtree(p, ignore_errors=ignore_errors)
    checkpoint.shutil.rmtree = rmtree
Features(np.full((3, 4), 2.0, dtype=np.float32), ["a.png", "b.png", "c.png"], np.array([0, 1, -1]), ["cat", "dog"],
         "model-2.0").save(out)
"""


@pytest.mark.parametrize("point", ["second write", "between the renames", "after the swap"])
def test_extract_output_killed_at_any_point_is_the_old_or_the_new_never_a_mix(tmp_path, point):
    out = tmp_path / "feats"
    _features(1.0).save(out)
    old = _contents(out)
    _features(2.0).save(tmp_path / "reference")
    new = _contents(tmp_path / "reference")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILL, point, str(out)], env=env, capture_output=True, timeout=120)
    assert done.returncode == 9, done.stderr.decode()[-2000:]
    left = {p.name: _contents(p) for p in tmp_path.iterdir() if p.name != "reference"}
    if point == "between the renames":  # no folder for a moment: the old one whole beside it, put back by the rerun
        assert "feats" not in left and [c for n, c in left.items() if n.endswith(".old")] == [old]
    else:  # beside it at most a hidden folder of the killed writer, which the rerun removes
        assert left.pop("feats") in (old, new) and all(n.startswith(".feats.") for n in left)
    _features(3.0).save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats", "reference"]
    assert np.array_equal(np.load(out / "features.npy"), np.full((3, 4), 3.0, dtype=np.float32))


def test_extract_refuses_to_replace_a_folder_that_holds_other_files(tmp_path, capsys):
    from tunelab.errors import ConfigError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(
        ConfigError,
        match=r"holds other files \(notes.txt\); extract's output replaces the whole "
        r"folder \(features.npy, index.csv, meta.json\), so give a new folder",
    ):
        _features(1.0).save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "features.npy").exists()


def test_save_through_a_link_or_to_the_current_folder(tmp_path, monkeypatch):
    real = tmp_path / "real"
    _features(1.0).save(real)
    (tmp_path / "link").symlink_to(real)
    _features(2.0).save(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and np.load(real / "features.npy")[0, 0] == 2.0
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    _features(3.0).save(".")
    assert np.load(empty / "features.npy")[0, 0] == 3.0
