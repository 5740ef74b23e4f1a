"""The few-shot text recipe: chosen only for text runs on the default recipe's own stages with at
most FEW_SHOT_PER_CLASS labelled texts a class, refitting on all of them, and written down."""

import json

import tunelab
from conftest import text_rows, write_text_csv
from tunelab.config import build_config
from tunelab.few_shot import FEW_SHOT_PER_CLASS, apply_few_shot


def _text(*overrides):
    return build_config(overrides=["data.text={}", *overrides])


def test_only_the_default_text_recipe_on_few_examples_changes():
    cfg, chosen = apply_few_shot(_text(), 20)
    assert [st.objective for st in cfg.stages] == ["contrastive", "classify"] and cfg.data.refit == "always"
    assert set(chosen) == {"stages", "data.refit"}
    assert apply_few_shot(_text(), FEW_SHOT_PER_CLASS + 1)[1] == {}  # more data: the default recipe
    assert apply_few_shot(_text("recipe=fast"), 20)[1] == {}
    assert apply_few_shot(_text("stages.1.lr=1e-5"), 20)[1] == {}  # the user's own stages stay
    assert apply_few_shot(build_config(), 20)[1] == {}  # images
    kept = apply_few_shot(_text("data.refit=never"), 20)[0]
    assert kept.data.refit == "never" and kept.stages[0].objective == "contrastive"


def test_a_few_shot_text_run_trains_pairs_then_the_head_and_refits(tiny_text_cfg, tmp_path):
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["data"]["train"] = str(write_text_csv(tmp_path / "few.csv", text_rows(22)))  # 17-18 a class to learn from
    del cfg["stages"]
    del cfg["data"]["refit"]
    run = tunelab.fit(cfg)
    assert [st.name for st in run.config.stages] == ["pairs", "head"]
    assert "refit" in run.metrics and run.config.data.refit == "always"
    saved = (run.dir / "config.yaml").read_text()
    assert "objective: contrastive" in saved and "refit: always" in saved
    assert "few labelled texts a class" in (run.dir / "log.txt").read_text()
