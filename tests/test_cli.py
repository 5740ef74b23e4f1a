import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tunelab
from tunelab.cli import main
from tunelab.config import build_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_run(tiny_cfg):
    tiny_cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-2}]
    return tunelab.fit(tiny_cfg)


def test_fit_prints_accuracy_and_run_folder(tiny_cfg, tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg))
    assert main(["fit", str(p), "--set", "stages.1.epochs=1", "--set", "run.name=cli"]) == 0
    out = capsys.readouterr().out
    assert "final test accuracy:" in out and f"run folder: {tmp_path / 'runs' / 'cli'}" in out
    saved = yaml.safe_load((tmp_path / "runs" / "cli" / "config.yaml").read_text())
    assert saved["stages"][1]["epochs"] == 1


def test_bad_config_key_exits_2_with_message(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  backbon: resnet18\n")
    assert main(["fit", str(p)]) == 2
    err = capsys.readouterr().err
    assert "model.backbon: unknown key 'backbon' (did you mean 'backbone'?)" in err


HEAVY = (
    "torch",
    "timm",
    "transformers",
    "optuna",
    "matplotlib",
    "sklearn",
    "jinja2",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "tunelab.engine.trainer",
    "tunelab.pipeline",
)


@pytest.mark.parametrize(
    "code",
    [
        "import tunelab, tunelab.config, tunelab.errors; tunelab.__all__",
        "from tunelab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from tunelab.cli import main\nassert main(['fit', 'BAD']) == 2",
    ],
    ids=["import", "help", "config-error"],
)
def test_heavy_libraries_load_only_when_needed(code, tmp_path):
    """`import tunelab`, `tunelab --help` and a config error take a fraction of a second: no torch."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  bogus: 1\n")
    probe = code.replace("BAD", str(bad)) + f"\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_lazy_names_resolve_and_unknown_names_fail():
    assert tunelab.fit.__module__ == "tunelab.pipeline" and "fit" in dir(tunelab)
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        tunelab.fitt  # noqa: B018


def test_summary_prints_a_table_per_stage(tiny_cfg, tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg))
    assert main(["summary", str(p)]) == 0
    out = capsys.readouterr().out
    assert out.count("trainable") >= 2 and "stage 1/2 'head'" in out and "stage 2/2 'top'" in out
    assert "backbone.stem" in out and "head.fc" in out and "frozen" in out


def test_evaluate_on_own_test_set_and_on_a_folder(tiny_run, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run.dir), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["accuracy"] == pytest.approx(tiny_run.metrics["test"]["accuracy"])
    assert m["n"] == tiny_run.metrics["test"]["n"]


def test_predict_from_run_folder_prints_topk(tiny_run, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8)).save(img)
    assert main(["predict", str(tiny_run.dir), str(img), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(img) and len(lines) == 4
    assert sum(float(x.split()[0]) for x in lines[1:]) <= 1.0 + 1e-6


def test_predict_missing_input(tiny_run, capsys):
    assert main(["predict", str(tiny_run.dir), "/no/such.png"]) == 2
    assert "/no/such.png does not exist" in capsys.readouterr().err


def test_evaluate_unfinished_run_says_resume(tiny_cfg, tmp_path, capsys):
    d = tmp_path / "half"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(tiny_cfg))
    (d / "classes.json").write_text("[]")
    assert main(["evaluate", str(d)]) == 2
    assert "tunelab fit --resume" in capsys.readouterr().err


def test_models_lists_offline_status(capsys):
    assert main(["models", "tf_efficientnet_lite*"]) == 0
    out = capsys.readouterr().out
    assert "tf_efficientnet_lite0" in out and "offline: packaged" in out
    assert "usable offline now: 2 (tf_efficientnet_lite0, tf_efficientnet_lite2)" in out  # both packaged


@pytest.mark.e2e
def test_predict_chelsea_with_imagenet_head_says_cat(tmp_path):
    """Acceptance: the offline Lite0 with its ImageNet classifier calls scikit-image's cat a cat."""
    from PIL import Image
    from skimage import data

    img = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(img)
    out = subprocess.run(
        [sys.executable, "-m", "tunelab", "predict", str(ROOT / "examples" / "imagenet.yaml"), str(img)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    prob, name = out[1].split(maxsplit=1)
    assert name in ("Egyptian cat", "tabby, tabby cat", "tiger cat") or "cat" in name.lower(), out
    assert float(prob) > 0.3


@pytest.mark.parametrize("k", ["-1", "0"])
def test_predict_top_k_below_one_is_an_error(tiny_run, image_folder, k, capsys):
    assert main(["predict", str(tiny_run.dir), str(image_folder / "cat" / "img0.png"), "--top-k", k]) == 2
    assert f"error: top_k (--top-k) is {k}; it must be at least 1" in capsys.readouterr().err


def test_config_path_that_is_a_folder_says_so(tiny_run, tmp_path, capsys):
    assert main(["fit", str(tmp_path)]) == 2
    assert f"error: config file {tmp_path} is a folder; give a YAML file\n" in capsys.readouterr().err
    assert main(["summary", str(tiny_run.dir)]) == 2
    assert f"is a folder; give a YAML file, e.g. {tiny_run.dir / 'config.yaml'}" in capsys.readouterr().err


def test_summary_says_which_rate_a_probe_may_choose(tiny_cfg):
    from tunelab.api import summary

    tiny_cfg["stages"][1] = {"name": "top", "train": "all", "epochs": 3, "lr": 3e-4, "lr_if_features_fit": 1e-4}
    assert "1.00e-04 if the pretrained features already fit the data" not in summary(build_config(tiny_cfg))
    tiny_cfg["model"] = {"backbone": "tf_efficientnet_lite0", "pretrained": True}
    assert "lr 3.00e-04 (1.00e-04 if the pretrained features already fit the data)" in summary(build_config(tiny_cfg))


def test_hostile_or_wrong_config_exits_2_with_a_message_not_a_traceback(tmp_path):
    """A 'billion laughs' config (9 GB and a traceback once) and a seed out of range: a real process
    under a 4 GiB address-space limit ends at once with exit 2 and the message on stderr."""
    import resource

    from tests.test_config import LAUGHS

    laughs = tmp_path / "laughs.yaml"
    laughs.write_text(LAUGHS)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    def tunelab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tunelab", *args], capture_output=True, text=True, timeout=120, preexec_fn=limited
        )

    out = tunelab("fit", str(laughs))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"error: {laughs}: its aliases (*name) expand to more than 100000 values")
    out = tunelab("fit", str(laughs), "--set", "run.seed=-1")  # the file is read first
    assert out.returncode == 2 and "expand to more than" in out.stderr
    laughs.write_text("run:\n  seed: 4294967296\n")
    out = tunelab("fit", str(laughs))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "run.seed: Value error, 4294967296 is not a seed; valid: an integer from 0 to 4294967295" in out.stderr
    out = tunelab("fit", str(laughs), "--set", "run.seed=0", "--set", "run.name=a/b")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "run.name: Value error, 'a/b' is not a folder name" in out.stderr


@pytest.mark.parametrize(("sig", "code", "word"), [("SIGTERM", 143, "SIGTERM"), ("SIGINT", 130, "interrupted")])
def test_a_signal_during_fit_says_which_folder_to_resume_and_the_resume_finishes(tiny_cfg, tmp_path, sig, code, word):
    """Was: SIGTERM ended the run with no message; Ctrl-C printed a literal RUN_DIR."""
    import os
    import signal

    tiny_cfg["run"].update(baselines=False)
    tiny_cfg["stages"] = [{"train": "head", "epochs": 40, "lr": 1e-3}]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg))
    run_dir = tmp_path / "runs" / "tiny"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "fit", str(p)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("stage 1 epoch 2/"):  # a checkpoint is written: stop the run in the middle
            proc.send_signal(getattr(signal, sig))
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().endswith(
        f"{word}; the run continues from its last finished epoch with `tunelab fit --resume {run_dir}`"
    ), err
    assert "Traceback" not in err and "RUN_DIR" not in err
    done = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert 2 <= done < 40 and not (run_dir / "metrics.json").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "tunelab", "fit", "--resume", str(run_dir)], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming stage 1 at epoch {done + 1}" in resumed.stdout
    assert [json.loads(r)["epoch"] for r in (run_dir / "metrics.jsonl").read_text().splitlines()] == list(range(40))


def test_ctrl_c_in_evaluate_says_run_it_again_not_resume(tiny_run, monkeypatch, capsys):
    """Was: 'continue with `tunelab fit --resume RUN_DIR`' for a command with nothing to resume."""
    import tunelab.api

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tunelab.api, "evaluate", interrupted)
    assert main(["evaluate", str(tiny_run.dir)]) == 130
    assert capsys.readouterr().err == "interrupted; nothing to continue from: run the same command again\n"


def test_ctrl_c_in_tune_says_what_tune_does_not_how_to_resume_its_trial(tmp_path, monkeypatch, capsys):
    import tunelab.search
    from tunelab.errors import Interrupted

    def interrupted(*a, **k):  # a trial's fit names its own folder, which is never resumed
        raise Interrupted(f"the run continues from its last finished epoch with `tunelab fit --resume {tmp_path}`")

    monkeypatch.setattr(tunelab.search, "tune", interrupted)
    assert main(["tune", str(tmp_path / "c.yaml")]) == 130
    assert capsys.readouterr().err == ("interrupted; what finished is in the study: run the same command again to add trials\n")


def test_evaluate_and_extract_on_a_built_in_set_without_a_test_split(digits_run, tmp_path, capsys):
    """Was: 'digits has no official test split; set data.test_split' for a run whose config sets
    it. evaluate --data on the run's own training set scores what the run held out; extract takes
    all of a built-in set that has no test split."""
    capsys.readouterr()
    assert tunelab.evaluate(digits_run, "digits") == tunelab.evaluate(digits_run)
    assert main(["evaluate", str(digits_run), "--data", "digits"]) == 0, capsys.readouterr().err
    out = tmp_path / "features"
    assert main(["extract", str(digits_run), "digits", "--out", str(out)]) == 0, capsys.readouterr().err
    assert len((out / "index.csv").read_text().splitlines()) == 1 + 1797  # a header and every image
