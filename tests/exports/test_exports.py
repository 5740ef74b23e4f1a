"""tunelab export: each format runs without tunelab and gives the run's logits on real inputs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from conftest import TINY
from tunelab.api import load_run
from tunelab.cli import main
from tunelab.errors import ConfigError, ModelError
from tunelab.exports._inference import as_tensors, inference_module, real_examples
from tunelab.text.predict import text_inputs


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> Path:
    from conftest import text_rows, write_text_csv

    root = tmp_path_factory.mktemp("text")
    cfg = {
        "run": {"name": "text", "progress": False, "dir": str(root / "runs"), "baselines": False},
        "data": {
            "train": str(write_text_csv(root / "reviews.csv", text_rows(20))),
            "test_split": 0.2,
            "refit": "never",
            "text": {"max_length": 16, "token_cache": str(root / "tokens")},
        },
        "model": {"backbone": str(tiny_encoder), "lexical": None},
        "stages": [{"train": "head", "epochs": 1, "lr": 1e-2}],
    }
    return tunelab.fit(cfg).dir


def test_a_lexical_blend_is_inside_the_graph_exports(text_run, tmp_path):
    """The blend reads the same token ids as the encoder: ONNX and TorchScript compute it; the plain
    transformers lines do not, so that format refuses the run and says what would work."""
    run = tunelab.fit(text_run / "config.yaml", overrides=[f"run.dir={tmp_path}", "run.name=blend", "model.lexical=0.5"])
    assert load_run(run.dir).model.lexical is not None
    for fmt in ("onnx", "torchscript"):
        assert tunelab.export(run.dir, fmt, tmp_path / f"m.{fmt}").max_abs_diff < 1e-4
    with pytest.raises(ModelError, match=r"blends word counts .*model.lexical: 0.5.*export it as onnx or torchscript"):
        tunelab.export(run.dir, "transformers", tmp_path / "hf")


def _run_outside(code: str) -> str:
    """Run ``code`` in a fresh interpreter and check that it never imported tunelab."""
    code = textwrap.dedent(code) + "\nimport sys\nassert not any(m.startswith('tunelab') for m in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _logits_and_inputs(run_dir: Path, tmp_path: Path, n: int = 20) -> tuple[np.ndarray, list[Path]]:
    run = load_run(run_dir)
    inputs = as_tensors(run, real_examples(run, n), n)
    with torch.inference_mode():
        logits = inference_module(run)(*inputs).numpy()
    files = []
    for i, x in enumerate(inputs):
        files.append(tmp_path / f"input{i}.npy")
        np.save(files[-1], x.numpy())
    return logits, files


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_graph_exports_match_pytorch_on_real_images_with_any_batch_size(image_run, tmp_path, fmt):
    result = tunelab.export(image_run, fmt, tmp_path / f"model.{fmt}")
    # images of the run's test split: all 48 of it (a fifth of 240), as it has fewer than the 100 asked for
    assert result.checked == 48 and result.max_abs_diff < 1e-4
    ours, (images,) = _logits_and_inputs(image_run, tmp_path)
    load = (
        "import onnxruntime as ort\ns = ort.InferenceSession(PATH)\n"
        'f = lambda x: s.run(None, {"images": x})[0]\n'
        'meta = s.get_modelmeta().custom_metadata_map\ncard, classes = meta["README.md"], meta["classes.json"]'
        if fmt == "onnx"
        else 'import torch\nextra = {"README.md": "", "classes.json": ""}\nm = torch.jit.load(PATH, _extra_files=extra)\n'
        "f = lambda x: m(torch.from_numpy(x)).detach().numpy()\n"
        'card, classes = extra["README.md"].decode(), extra["classes.json"]'
    )
    out = _run_outside(f"""
        import json, numpy as np
        PATH = {str(result.path)!r}
        {textwrap.indent(load, "        ").strip()}
        x = np.load({str(images)!r})
        assert x.dtype == np.uint8
        print(json.dumps({{"logits": np.concatenate([f(x[:1]), f(x[1:8]), f(x[8:])]).tolist(), "card": card,
                          "classes": json.loads(classes)}}))
    """)
    got = json.loads(out.splitlines()[-1])
    assert np.abs(np.array(got["logits"]) - ours).max() < 1e-4
    assert got["card"].startswith("---\n") and "## Limitations" in got["card"]
    assert got["classes"] == json.loads((image_run / "classes.json").read_text())


def test_timm_folder_loads_in_plain_timm_without_tunelab(image_run, tmp_path):
    result = tunelab.export(image_run, "timm", tmp_path / "timm")
    assert result.max_abs_diff < 1e-4
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in result.path.iterdir()}
    ours, (images,) = _logits_and_inputs(image_run, tmp_path)
    k = len(json.loads((image_run / "classes.json").read_text()))
    out = _run_outside(f"""
        import json, numpy as np, timm, torch
        folder = {str(result.path)!r}
        a = timm.create_model("local-dir:" + folder, pretrained=True).eval()
        b = timm.create_model("test_efficientnet", pretrained=True, num_classes={k},
                              pretrained_cfg_overlay={{"file": folder + "/model.safetensors", "num_classes": {k}}}).eval()
        cfg = timm.data.resolve_data_config({{}}, model=a)
        x = torch.from_numpy(np.load({str(images)!r})).float() / 255
        x = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        with torch.no_grad():
            print(json.dumps({{"a": a(x).tolist(), "b": b(x).tolist(), "size": cfg["input_size"],
                              "labels": a.pretrained_cfg["label_names"]}}))
    """)
    got = json.loads(out.splitlines()[-1])
    for key in ("a", "b"):
        assert np.abs(np.array(got[key]) - ours).max() < 1e-4, key
    assert got["size"] == [3, 32, 32] and len(got["labels"]) == k


def test_text_exports_onnx_and_a_transformers_folder_with_the_documented_lines(text_run, tmp_path):
    onnx = tunelab.export(text_run, "onnx", tmp_path / "text.onnx")
    assert onnx.max_abs_diff < 1e-4
    folder = tunelab.export(text_run, "transformers", tmp_path / "hf")
    assert folder.max_abs_diff < 1e-4
    card = (folder.path / "README.md").read_text()
    snippet = card.split("```python\n")[1].split("```")[0]  # the lines the card documents, run as a user would
    run = load_run(text_run)
    texts = ["the film was brilliant and moving", "dull plot , bad cast"]
    with torch.inference_mode():
        ours = run.model(text_inputs(run.config, [], texts)[2]).numpy()
    out = _run_outside(f"texts = {texts!r}\n" + snippet + "\nimport json\nprint(json.dumps(logits.tolist()))")
    assert np.abs(np.array(json.loads(out.splitlines()[-1])) - ours).max() < 1e-4


def test_wrong_format_and_bad_head_are_clear_errors(image_run, text_run, tmp_path, capsys):
    with pytest.raises(ConfigError, match="for text runs"):
        tunelab.export(image_run, "transformers")
    with pytest.raises(ConfigError, match="valid: onnx, torchscript, timm, transformers"):
        tunelab.export(text_run, "tflite")
    assert main(["export", str(text_run), "--format", "timm"]) == 2
    assert "--format timm is for image runs" in capsys.readouterr().err


def test_timm_format_refuses_a_head_with_hidden_layers(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["run"].update(dir=str(tmp_path / "runs"), baselines=False)
    cfg["model"]["head"] = {"hidden": [{"units": 8}]}
    cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    run = tunelab.fit(cfg)
    with pytest.raises(ModelError, match="hidden layers"):
        tunelab.export(run.dir, "timm")


def test_cli_exports_to_the_run_folder_by_default(image_run, capsys):
    assert main(["export", str(image_run), "--format", "torchscript", "--check", "10"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {image_run / 'export' / 'model.torchscript.pt'}" in out and "on 10 real examples" in out


def test_a_run_on_a_built_in_set_split_by_test_split_exports_checked_on_its_own_test_split(digits_run, capsys):
    """digits has no official test split: the run held one out (data.test_split), and the export's
    check reads that split, as evaluate does, rather than asking for the official one."""
    assert main(["export", str(digits_run), "--format", "torchscript", "--check", "20"]) == 0, capsys.readouterr().err
    assert "on 20 real examples" in capsys.readouterr().out
    examples = real_examples(load_run(digits_run), 20)
    test_items = set(
        tunelab.vision.data.load_data(
            load_run(digits_run).config.data.model_copy(update={"test_samples_per_class": None})
        ).test.items
    )
    assert len(examples) == 20 and set(examples.items) <= test_items  # 2 of each class, all of the held-out split


def test_a_text_run_is_checked_on_its_own_test_split(text_run):
    from tunelab.text.data import load_text_data

    run = load_run(text_run)
    examples = real_examples(run, 100)
    test = load_text_data(run.config.data.model_copy(update={"test_samples_per_class": None})).test
    assert sorted(examples.items) == sorted(test.items) and len(test) == 8  # a fifth of 40 texts


@pytest.mark.e2e
def test_lite0_run_exports_to_onnx_and_to_a_timm_folder_plain_timm_loads(tmp_path):
    """The packaged Lite0 weights (tf_efficientnet_lite0, 'same' padding) through both formats."""
    root = Path(__file__).resolve().parents[2]
    run = tunelab.fit(
        root / "examples" / "default.yaml",
        overrides=[
            "recipe=probe",
            f"run.dir={tmp_path}",
            "run.name=lite0",
            "run.progress=false",
            "run.baselines=false",
            "data.samples_per_class=5",
            "data.val_samples_per_class=2",
            "data.test_samples_per_class=10",
            "data.refit=never",
        ],
    )
    onnx = tunelab.export(run.dir, "onnx", check=100)
    assert onnx.checked == 100 and onnx.max_abs_diff < 1e-3
    folder = tunelab.export(run.dir, "timm", tmp_path / "timm", check=20)
    assert folder.max_abs_diff < 1e-3
    ours, (images,) = _logits_and_inputs(run.dir, tmp_path)
    out = _run_outside(f"""
        import json, numpy as np, timm, torch
        m = timm.create_model("tf_efficientnet_lite0", pretrained=True, num_classes=10,
                              pretrained_cfg_overlay={{"file": {str(folder.path / "model.safetensors")!r}, "num_classes": 10}})
        x = (torch.from_numpy(np.load({str(images)!r})).float() - 127.5) / 127.5   # mean = std = 0.5
        with torch.no_grad():
            print(json.dumps(m.eval()(x).tolist()))
    """)
    assert np.abs(np.array(json.loads(out.splitlines()[-1])) - ours).max() < 1e-3


def test_a_torchscript_export_writes_through_a_temporary_file_of_its_own(image_run, tmp_path, capsys):
    """Was: a fixed `.model.torchscript.pt.tmp`, shared by exports to one folder and followed when a
    link of that name was there."""
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep\n")
    out = tmp_path / "ts"
    out.mkdir()
    (out / ".model.torchscript.pt.tmp").symlink_to(target)
    assert (
        main(["export", str(image_run), "--format", "torchscript", "--out", str(out / "model.torchscript.pt"), "--check", "4"])
        == 0
    ), capsys.readouterr().err
    assert target.read_text() == "keep\n"
    assert sorted(p.name for p in out.iterdir()) == [".model.torchscript.pt.tmp", "model.torchscript.pt"]
