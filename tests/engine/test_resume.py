"""A resume refuses checkpoint state it cannot trust, with a message naming the file and the key."""

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import tunelab
from tunelab.cli import main
from tunelab.errors import ModelError


@pytest.fixture
def interrupted(tiny_cfg):
    """A finished two-stage run made to look interrupted (no final metrics)."""
    tiny_cfg["run"]["baselines"] = False
    tiny_cfg["stages"] = [{"train": "head", "epochs": 2, "lr": 1e-2}, {"train": "head", "epochs": 2, "lr": 1e-3}]
    run = tunelab.fit(tiny_cfg)
    (run.dir / "metrics.json").unlink()
    return run.dir


def _rewrite_state(run_dir, state_text):
    last = run_dir / "checkpoints" / "last.safetensors"
    with safe_open(str(last), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        state = json.loads(f.metadata()["tunelab_state"])
    save_file(tensors, str(last), metadata={"tunelab_state": state_text(state)})


def _edit(**changes):
    def text(state):
        state.update(changes)
        return json.dumps({k: v for k, v in state.items() if v is not None})

    return text


@pytest.mark.parametrize(
    ("state_text", "message"),
    [
        (lambda s: "{not json", r"its tunelab_state metadata is not JSON"),
        (lambda s: "[1, 2]", r"its tunelab_state metadata is list, not a JSON object"),
        (_edit(stage=None), r"the saved training state has no 'stage'; the checkpoint was edited"),
        (_edit(stage=99), r"the saved training state has stage 99; the config has stages 0 to 1"),
        (_edit(epoch=-7), r"the saved training state has epoch -7; stage 1 of the config has epochs 0 to 1"),
        (_edit(epoch=5), r"has epoch 5; stage 1 of the config has epochs 0 to 1"),
        (_edit(stage="1"), r"has stage '1'"),
    ],
    ids=["not-json", "not-object", "no-stage", "stage-99", "epoch-negative", "epoch-past-stage", "stage-string"],
)
def test_damaged_checkpoint_state_is_refused_with_a_message(interrupted, state_text, message, capsys):
    _rewrite_state(interrupted, state_text)
    with pytest.raises(ModelError, match=message):
        tunelab.fit(resume=interrupted)
    assert main(["fit", "--resume", str(interrupted)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint ") or err.startswith("error: " + str(interrupted)), err
    assert "last.safetensors" in err and "Traceback" not in err


def test_an_intact_checkpoint_resumes(interrupted):
    run = tunelab.fit(resume=interrupted)
    assert [(r["stage"], r["epoch"]) for r in run.history] == [(0, 0), (0, 1), (1, 0), (1, 1)]
