"""Multi-label and regression end to end, table-driven over modalities: fit, evaluate and predict
on tiny models, what the run keeps (thresholds, target scale), and bad input for the new types
ending in a message that names the file, row and column."""

import copy
import json
from pathlib import Path

import pytest

import tunelab
from conftest import TINY, problem_manifest, problem_texts, synthetic_images, write_images
from tunelab.api import load_run, predict

PROBLEMS = ["multi_label", "regression"]


def image_cfg(tmp: Path, problem: str) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(tmp / "runs"), baselines=False)
    cfg["data"] = {"train": str(problem_manifest(tmp, problem)), "problem": problem, "image_size": 32, "test_split": 0.2}
    cfg["data"].update(val_split=0.2, batch_size=16, refit="never")
    cfg["stages"] = [{"train": "head", "epochs": 2, "lr": 1e-2}]
    return cfg


def text_cfg(tmp: Path, problem: str, tiny_encoder: Path) -> dict:
    return {
        "run": {"name": "tiny-text", "progress": False, "seed": 0, "dir": str(tmp / "runs"), "baselines": False},
        "data": {
            "train": str(problem_texts(tmp / "texts.csv", problem)),
            "problem": problem,
            "test_split": 0.2,
            "batch_size": 8,
            "refit": "never",
            "text": {"max_length": 16, "token_cache": str(tmp / "tokens")},
        },
        "model": {"backbone": str(tiny_encoder)},
        "stages": [{"name": "head", "train": "head", "epochs": 2, "lr": 1e-2}],
    }


@pytest.fixture(scope="module", params=[(m, p) for m in ("images", "texts") for p in PROBLEMS], ids=lambda x: f"{x[0]}-{x[1]}")
def problem_run(request, tmp_path_factory, tiny_encoder):
    modality, problem = request.param
    tmp = tmp_path_factory.mktemp(f"{modality}-{problem}")
    cfg = image_cfg(tmp, problem) if modality == "images" else text_cfg(tmp, problem, tiny_encoder)
    return modality, problem, tunelab.fit(cfg)


def test_a_run_of_the_problem_scores_keeps_and_predicts_in_its_own_terms(problem_run):
    modality, problem, run = problem_run
    primary = {"multi_label": "map", "regression": "r2"}[problem]
    for split in ("val", "test"):
        assert primary in run.metrics[split] and "accuracy" not in run.metrics[split]
    kept = json.loads((run.dir / "objective.json").read_text())
    assert kept["problem"] == problem
    if problem == "multi_label":
        assert kept["thresholds"] == pytest.approx(run.metrics["decision"]["thresholds"], abs=1e-4)
        assert set(run.metrics["test"]["per_label"]) == set(run.classes)
    else:
        assert kept["std"] > 0 and run.metrics["test"]["target"]["min"] <= kept["mean"]
    again = tunelab.evaluate(run.dir)  # the run's own test set, scored again from its folder
    assert again[primary] == pytest.approx(run.metrics["test"][primary], abs=1e-5)
    if modality == "images":
        rows = predict(run.dir, [str(next((synthetic_images() / "class0").iterdir()))])
    else:
        rows = predict(run.dir, texts=["the film was great and fun"])
    if problem == "multi_label":
        assert rows[0].labels is not None and set(rows[0].labels) <= set(run.classes)
        thresholds = dict(zip(run.classes, kept["thresholds"]))
        assert all(p >= thresholds[n] for n, p in rows[0].top if n in rows[0].labels)
    else:
        assert isinstance(rows[0].value, float) and rows[0].labels is None


def test_a_regression_model_outputs_values_in_the_targets_units(tmp_path):
    """The head's last layer un-standardises: an untrained head starts at the training mean."""
    run = tunelab.fit({**image_cfg(tmp_path, "regression"), "stages": [{"train": "head", "epochs": 0, "lr": 1e-2}]})
    mean = json.loads((run.dir / "objective.json").read_text())["mean"]
    assert 10 < mean < 23.5  # the targets are 10 .. 23.5
    model = load_run(run.dir).model
    assert float(model.head.out.shift) == pytest.approx(mean)


def _cli(argv: list[str]) -> int:
    from tunelab.cli import main

    return main(argv)


@pytest.mark.parametrize(
    "problem, cells, message",
    [
        ("regression", {5: "very good"}, "line 6, column 'label': the target 'very good' is not a number"),
        ("regression", {3: "NaN"}, "line 4, column 'label': the target is NaN"),
        ("multi_label", {}, "data.label_separator is ';', which joins no label cell, but"),
    ],
)
def test_bad_targets_end_in_a_message_naming_the_file_row_and_column(tmp_path, capsys, problem, cells, message):
    manifest = problem_manifest(tmp_path, problem)
    lines = manifest.read_text().splitlines()
    for i, cell in cells.items():
        lines[i] = lines[i].rsplit(",", 1)[0] + "," + cell
    manifest.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "c.yaml"
    sep = ";" if problem == "multi_label" else "|"
    cfg.write_text(f"data: {{train: {manifest}, problem: {problem}, label_separator: '{sep}'}}\nrun: {{dir: {tmp_path}}}\n")
    assert _cli(["fit", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(manifest) in err and message in err and "Traceback" not in err


def test_a_label_present_only_in_the_test_set_is_named(tmp_path, capsys):
    train = problem_manifest(tmp_path / "a", "multi_label")
    test = tmp_path / "test.csv"
    new = write_images(tmp_path / "new", {"x": 2})  # images the run never trained on
    test.write_text(f"path,label\n{new[0]},even|low\n{new[1]},even|purple\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{train: {train}, test: {test}, problem: multi_label}}\nrun: {{dir: {tmp_path}}}\n")
    assert _cli(["fit", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{test}, line 3, column 'label': the label 'purple' is not among the training labels" in err


def test_a_built_in_set_or_class_folders_are_refused_for_a_multi_label_run(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{train: digits, problem: multi_label}}\nrun: {{dir: {tmp_path}}}\n")
    assert _cli(["fit", str(cfg)]) == 2
    assert "data.problem multi_label reads a CSV manifest with columns path,label" in capsys.readouterr().err


def test_extract_lists_each_rows_labels_or_value(problem_run, tmp_path):
    import csv

    from tunelab.features import extract

    _, problem, run = problem_run
    feats = extract(run.dir, run.config.data.train, out=tmp_path / "feats")
    with open(tmp_path / "feats" / "index.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(feats.items) == feats.features.shape[0]
    if problem == "multi_label":
        assert all(set(r["class"].split("|")) <= set(run.classes) | {"(no label)"} for r in rows)
    else:
        assert all(float(r["label"]) == float(r["class"]) for r in rows)


def test_multi_label_targets_can_be_several_0_1_columns(tmp_path, capsys):
    """The same labels as one column joined by | or as one 0/1 column a label give the same targets;
    a cell that is not 0 or 1 is named."""
    import csv

    from tunelab.vision.config import ImageDataConfig
    from tunelab.vision.data import load_data

    joined = problem_manifest(tmp_path, "multi_label")
    names = ["even", "low", "odd", "three"]
    wide = tmp_path / "wide.csv"
    with open(joined) as f, open(wide, "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["path", *names])
        for row in csv.DictReader(f):
            w.writerow([row["path"], *(int(n in row["label"].split("|")) for n in names)])
    common = {"problem": "multi_label", "image_size": 16, "val_split": 0.2, "test": None}
    a = load_data(ImageDataConfig(train=str(joined), **common))
    b = load_data(ImageDataConfig(train=str(wide), label_columns=names, **common))
    assert a.classes == b.classes == names and a.train.items == b.train.items
    assert (a.train.labels == b.train.labels).all()
    rows = wide.read_text().splitlines()
    rows[3] = rows[3].rsplit(",", 1)[0] + ",maybe"
    wide.write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{train: {wide}, problem: multi_label, label_columns: {names}}}\nrun: {{dir: {tmp_path}}}\n")
    assert _cli(["fit", str(cfg)]) == 2
    assert f"{wide}, line 4, column 'three': 'maybe' is not 0 or 1" in capsys.readouterr().err


def test_a_text_files_0_1_label_columns_are_read_in_their_order(tmp_path):
    from tunelab.objectives import data_objective
    from tunelab.text._sources import open_text_source
    from tunelab.text.config import TextDataConfig, TextOptions

    f = tmp_path / "t.csv"
    f.write_text("text,sport,politics\nthe match,1,0\nthe vote,0,1\nthe vote on the match,yes,yes\nthe weather,0,0\n")
    text = TextOptions(label_column="unused")
    objective = data_objective(
        TextDataConfig(train=str(f), problem="multi_label", label_columns=["sport", "politics"], text=text)
    )
    src = open_text_source(str(f), text, "train", field="train", objective=objective)
    assert src.classes == ["sport", "politics"]
    assert src.labels.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]
