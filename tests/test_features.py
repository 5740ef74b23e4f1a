"""tunelab extract: pooled features of images and texts, with their files and labels, from a config
or a finished run."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml

import tunelab
from conftest import TINY, text_rows, write_text_csv
from tunelab.api import load_run
from tunelab.cli import main
from tunelab.data import decode_file


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
