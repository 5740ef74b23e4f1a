"""tunelab export of multi-label and regression runs: the graphs give what ``predict`` reports
(label probabilities, values in the target's units), the library folders end in one linear layer
with the regression's rescaling folded in, and every export carries how to decode its outputs
(the problem type, the names, a multi-label run's thresholds as the run chose them)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tunelab
from conftest import TINY, synthetic_images
from tunelab.api import load_run, predict
from tunelab.exports._inference import as_tensors, real_examples

# what each problem type exports: the graph's output, the library folders' output, transformers'
# problem_type, and the key of decoding.json that names the outputs
PROBLEMS: dict[str, dict[str, str]] = {
    "multi_label": {
        "graph": "probabilities",
        "folder": "logits",
        "problem_type": "multi_label_classification",
        "names": "labels",
    },
    "regression": {"graph": "values", "folder": "values", "problem_type": "regression", "names": "target"},
}


def _label(problem: str, c: int) -> str:
    """Synthetic class ``c`` as a label set (even/odd, low, three) or a value (10 + 1.5 c)."""
    if problem == "multi_label":
        return "|".join(["even" if c % 2 == 0 else "odd"] + (["low"] if c < 5 else []) + (["three"] if c % 3 == 0 else []))
    return str(c * 1.5 + 10)


@pytest.fixture(scope="module", params=list(PROBLEMS))
def problem_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A finished tiny image run of each problem type on a manifest of the synthetic images."""
    problem = request.param
    root = tmp_path_factory.mktemp(problem)
    rows = [(str(f), _label(problem, int(d.name[5:]))) for d in sorted(synthetic_images().iterdir()) for f in sorted(d.iterdir())]
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows])
    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(root / "runs"), baselines=False)
    cfg["data"] = {
        "train": str(root / "manifest.csv"),
        "problem": problem,
        "image_size": 32,
        "test_split": 0.2,
        "val_split": 0.2,
        "batch_size": 16,
        "refit": "never",
    }
    cfg["stages"] = [{"train": "head", "epochs": 2, "lr": 1e-2}]
    return problem, tunelab.fit(cfg).dir


def _checked_inputs(run_dir: Path, n: int = 20) -> tuple[list[str], torch.Tensor, Any]:
    """Held-out images of the run: their files, the uint8 batch an export takes, and the run."""
    run = load_run(run_dir)
    examples = real_examples(run, n)
    (images,) = as_tensors(run, examples, n)
    return [str(p) for p in list(examples.items)[:n]], images, run


def _thresholds(run_dir: Path) -> list[float] | None:
    return json.loads((run_dir / "objective.json").read_text()).get("thresholds")


def _check_decoding(decoding: dict[str, Any], problem: str, run_dir: Path, output: str) -> None:
    classes = json.loads((run_dir / "classes.json").read_text())
    assert decoding["problem"] == problem and decoding["output"] == output
    assert decoding[PROBLEMS[problem]["names"]] == (classes if problem == "multi_label" else classes[0])
    if problem == "multi_label":  # the thresholds the run chose on validation, as predict applies them
        assert decoding["thresholds"] == _thresholds(run_dir) and decoding["activation"] == "sigmoid"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_graph_exports_give_what_predict_reports(problem_run, fmt, tmp_path):
    """ONNX (in onnxruntime) and TorchScript give the run's sigmoid probabilities or values on its
    held-out images, and the labels the thresholds in the file select are predict's label sets."""
    import onnxruntime as ort

    problem, run_dir = problem_run
    result = tunelab.export(run_dir, fmt, tmp_path / f"model.{fmt}")
    assert result.output == PROBLEMS[problem]["graph"] and result.max_abs_diff < 1e-5
    files, images, run = _checked_inputs(run_dir)
    if fmt == "onnx":
        session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == [PROBLEMS[problem]["graph"]]
        got = np.concatenate([session.run(None, {"images": images[i : i + 7].numpy()})[0] for i in range(0, len(images), 7)])
        decoding = json.loads(session.get_modelmeta().custom_metadata_map["decoding.json"])
    else:
        extra = {"decoding.json": ""}
        with torch.inference_mode():
            got = torch.jit.load(str(result.path), _extra_files=extra)(images).numpy()
        decoding = json.loads(extra["decoding.json"])
    _check_decoding(decoding, problem, run_dir, PROBLEMS[problem]["graph"])
    with torch.inference_mode():
        ours = run.objective.decode(run.model(images))
    assert got.shape == ours.shape and np.abs(got - ours).max() < 1e-5
    _same_as_predict(problem, got, decoding, predict(run_dir, files, top_k=len(run.classes)))


def _same_as_predict(problem: str, got: np.ndarray, decoding: dict[str, Any], predictions: list[Any]) -> None:
    """The export's outputs read with decoding.json alone are what ``predict`` reports for the files."""
    if problem == "regression":
        np.testing.assert_allclose(got[:, 0], [p.value for p in predictions], atol=1e-4)
        return
    names, thresholds = decoding["labels"], np.asarray(decoding["thresholds"])
    for row, p in zip(got, predictions):
        assert sorted(n for n, v, t in zip(names, row, thresholds) if v >= t) == sorted(p.labels)
        np.testing.assert_allclose([dict(p.top)[n] for n in names], row, atol=1e-4)


def test_a_timm_folder_ends_in_one_linear_layer_with_the_target_scale_folded_in(problem_run, tmp_path):
    """Plain timm loads the folder; a regression's folder gives values in the target's units (the
    rescaling folded into the classifier), a multi-label one the logits whose sigmoid predict reads."""
    import timm

    problem, run_dir = problem_run
    result = tunelab.export(run_dir, "timm", tmp_path / "timm")
    assert result.output == PROBLEMS[problem]["folder"] and result.max_abs_diff < 1e-4
    decoding = json.loads((result.path / "decoding.json").read_text())
    _check_decoding(decoding, problem, run_dir, PROBLEMS[problem]["folder"])
    files, images, run = _checked_inputs(run_dir)
    model = timm.create_model(f"local-dir:{result.path}", pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    x = (images.float() / 255 - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(x)
    got = torch.sigmoid(out).numpy() if decoding["activation"] == "sigmoid" else out.numpy()
    with torch.inference_mode():
        assert np.abs(got - run.objective.decode(run.model(images))).max() < 1e-4
    _same_as_predict(problem, got, decoding, predict(run_dir, files, top_k=len(run.classes)))
    assert "decoding.json" in (result.path / "README.md").read_text()


def _text_target(problem: str, i: int, text: str, label: str) -> str:
    """A review's labels (its sentiment, and "long" past six words) or score (about 1 or -2)."""
    if problem == "multi_label":
        return label + ("|long" if len(text.split()) > 6 else "")
    return str((1.0 if label == "pos" else -2.0) + 0.1 * (i % 3))


@pytest.fixture(scope="module", params=list(PROBLEMS))
def text_problem_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path
) -> tuple[str, Path]:
    """A tiny text run of each problem type on the tiny BERT."""
    from conftest import text_rows, write_text_csv

    problem = request.param
    root = tmp_path_factory.mktemp(f"text-{problem}")
    rows = [(text, _text_target(problem, i, text, label)) for i, (text, label) in enumerate(text_rows(20))]
    cfg = {
        "run": {"name": problem, "progress": False, "dir": str(root / "runs"), "baselines": False},
        "data": {
            "train": str(write_text_csv(root / "reviews.csv", rows)),
            "problem": problem,
            "test_split": 0.2,
            "refit": "never",
            "text": {"max_length": 16, "token_cache": str(root / "tokens")},
        },
        "model": {"backbone": str(tiny_encoder), "lexical": None},
        "stages": [{"train": "head", "epochs": 2, "lr": 1e-2}],
    }
    return problem, tunelab.fit(cfg).dir


def test_a_text_run_exports_to_onnx_and_a_transformers_folder_read_as_predict_reads_it(text_problem_run, tmp_path):
    """The transformers folder names the problem type as transformers does, and its documented lines
    give the logits whose sigmoid predict thresholds, or values in the target's units (the rescaling
    folded into head.safetensors); ONNX gives the probabilities or values themselves."""
    problem, run_dir = text_problem_run
    onnx = tunelab.export(run_dir, "onnx", tmp_path / "text.onnx")
    assert onnx.output == PROBLEMS[problem]["graph"] and onnx.max_abs_diff < 1e-4
    folder = tunelab.export(run_dir, "transformers", tmp_path / "hf")
    assert folder.output == PROBLEMS[problem]["folder"] and folder.max_abs_diff < 1e-4
    assert json.loads((folder.path / "config.json").read_text())["problem_type"] == PROBLEMS[problem]["problem_type"]
    decoding = json.loads((folder.path / "decoding.json").read_text())
    _check_decoding(decoding, problem, run_dir, PROBLEMS[problem]["folder"])
    snippet = (folder.path / "README.md").read_text().split("```python\n")[1].split("```")[0]
    texts = ["the film was brilliant and moving", "dull plot , bad cast", "a very quite dull and tedious bland movie plot"]
    scope: dict[str, Any] = {"texts": texts}
    exec(snippet, scope)
    out = scope[PROBLEMS[problem]["folder"]]
    got = torch.sigmoid(out).numpy() if decoding["activation"] == "sigmoid" else out.numpy()
    _same_as_predict(problem, got, decoding, predict(run_dir, texts=texts, top_k=len(load_run(run_dir).classes)))
