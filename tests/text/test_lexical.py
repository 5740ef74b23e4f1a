"""The lexical blend: word-piece TF-IDF in torch equals scikit-learn's, the regression's
probabilities come through unchanged, the weight is chosen on validation log-loss, and a run's
blend is saved, reloaded and applied by predict and evaluate exactly as the run scored it."""

import json

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import TfidfTransformer

import tunelab
from conftest import text_rows, write_text_csv
from tunelab.api import load_run
from tunelab.config import ModelConfig, build_config
from tunelab.errors import ConfigError
from tunelab.tasks import build_model
from tunelab.text.data import Tokens
from tunelab.text.lexical import LexicalBlend, cap_sureness, count_matrix, fit_lexical, fit_scales
from tunelab.text.lexical_fit import lexical_summary

V = 40


def _windowed() -> Tokens:
    """Three texts, the second read as two windows (rows 1 and 2); 0 pads, 1 and 2 are special."""
    ids = torch.tensor([[1, 5, 6, 6, 2], [1, 7, 8, 9, 2], [1, 9, 7, 2, 0], [1, 30, 2, 0, 0]])
    return Tokens(ids, torch.tensor([5, 5, 4, 3]), starts=torch.tensor([0, 1, 3, 4]))


def test_torch_tfidf_equals_scikit_learn_over_all_windows():
    tokens, ignore = _windowed(), np.zeros(V, dtype=bool)
    ignore[[0, 1, 2]] = True
    counts = count_matrix(tokens, V, ignore)
    assert counts[1].toarray()[0, [7, 8, 9]].tolist() == [2, 1, 2]  # both windows of text 1 count
    tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
    lex = LexicalBlend(V, 2)
    lex.idf.copy_(torch.as_tensor(tfidf.idf_))
    lex.ignore.copy_(torch.as_tensor(ignore))
    ours = lex.features(tokens).numpy()
    np.testing.assert_allclose(ours, tfidf.transform(counts).toarray(), atol=1e-6)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_regression_predicts_what_scikit_learn_does(classes):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), 12)
    # each class has its own words (ids 10 + 5k .. 14 + 5k) among shared ones: separable by counts
    rows = [[1] + list(rng.integers(3, 10, 4)) + list(10 + 5 * c + rng.integers(0, 5, 3)) + [2] for c in y]
    tokens = Tokens(torch.tensor(rows), torch.full((len(rows),), len(rows[0])))
    lex = fit_lexical(tokens, y, vocab_size=V, num_classes=classes, ignore=[0, 1, 2], seed=0)
    probs = lex.log_probs(tokens).exp()
    assert probs.shape == (len(y), classes) and torch.allclose(probs.sum(1), torch.ones(len(y)))
    assert (probs.argmax(1).numpy() == y).mean() == 1.0


def test_blend_scales_and_their_choice_on_validation():
    lex = LexicalBlend(V, 2)
    lex.intercept.copy_(torch.tensor([0.0, 2.0]))  # the regression says class 1 whatever the words
    tokens, logits = _windowed(), torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(lex.blend(logits, tokens), logits.log_softmax(1))  # new: the network alone
    assert lex.share == 0.0 and lex.with_scales(1.0, 3.0).share == 0.75
    assert torch.allclose(lex.with_scales(0.0, 1.0).blend(logits, tokens), torch.tensor([0.0, 2.0]).log_softmax(0).expand(3, 2))
    lex_lp = torch.tensor([0.0, 2.0]).log_softmax(0).expand(3, 2)
    a, b, seen = fit_scales(logits, lex_lp, torch.tensor([0, 0, 1]))
    assert seen["network"]["accuracy"] == seen["blend"]["accuracy"] == 1.0  # a wrong regression does not sway it
    assert seen["words"]["accuracy"] == pytest.approx(1 / 3)
    # a regression that is right where the network is wrong, but unsure: it needs a large scale
    unsure = torch.tensor([[0.1, -0.1], [0.1, -0.1], [-0.1, 0.1], [-0.1, 0.1]]).log_softmax(1)
    wrong_net = torch.tensor([[0.0, 4.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    a, b, seen = fit_scales(wrong_net, unsure, torch.tensor([0, 0, 1, 1]))
    assert seen["blend"]["accuracy"] == 1.0 and b / max(a, 1e-9) > 10


def test_a_blend_less_accurate_than_the_network_on_validation_is_refused():
    """Bug: on 8 validation snippets the lowest log-loss was a near-uniform regression (scales 0,
    0.1) right on 3 of them where the network, sure and wrong once, was right on 5; it cost 10 points
    on the test set. Such a blend is refused and the network kept as trained."""
    sure_wrong_once = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [10.0, 0.0]])
    hardly_informed = torch.tensor([[0.2, 0.0], [0.2, 0.0], [0.01, 0.0], [0.01, 0.0]]).log_softmax(1)
    a, b, seen = fit_scales(sure_wrong_once, hardly_informed, torch.tensor([0, 0, 1, 1]))
    assert (a, b) == (1.0, 0.0) and seen["blend"]["accuracy"] == 0.75
    assert seen["refused"]["lex_scale"] > 0 and seen["refused"]["accuracy"] == 0.5
    assert seen["refused"]["log_loss"] < seen["network"]["log_loss"]  # what the log-loss alone would have taken
    line = lexical_summary({"scales": [a, b], "share": 0.0, "chosen_by": "validation log-loss", "val": seen})
    assert "scored 0.500, below the network alone: refused, the network kept as trained" in line


def test_separable_validation_texts_do_not_make_the_blend_100_percent_sure():
    """Bug: on validation texts the word counts separate, the lowest log-loss is at the grid's
    largest scales (10, 100), and every prediction was 100 % sure, nonsense included (0.996). A
    common factor brings the mean top probability down to (right + 1) / (n + 2); no class changes."""
    labels = torch.tensor([0, 1] * 5)
    sure_words = torch.where(torch.nn.functional.one_hot(labels, 2).bool(), 0.3, -0.3).log_softmax(1)
    net = torch.zeros(10, 2)  # the network says nothing
    a, b, seen = fit_scales(net, sure_words, labels)
    sure = seen["sureness"]
    ua, ub = seen["uncapped"]["net_scale"], seen["uncapped"]["lex_scale"]
    assert ub > 30 and sure["mean_top_before"] > 0.999 and sure["bound"] == pytest.approx(11 / 12)
    assert sure["mean_top"] == pytest.approx(11 / 12, abs=1e-4) and seen["blend"]["accuracy"] == 1.0
    assert (a, b) == (pytest.approx(ua * sure["factor"], rel=1e-5), pytest.approx(ub * sure["factor"], rel=1e-5))
    prior = torch.tensor([[0.02, -0.02]]).log_softmax(1)  # a text with no known word: the regression's intercept
    assert (100.0 * prior).softmax(1).max() > 0.98 and (b * prior).softmax(1).max() < 0.6
    line = lexical_summary({"scales": [a, b], "share": 1.0, "chosen_by": "validation log-loss", "val": seen})
    assert "was 1.000 sure on average: both scales x" in line and "0.917 sure, as the validation accuracy supports" in line
    # a blend already as unsure as its accuracy allows keeps its scales
    assert cap_sureness(net.log_softmax(1), sure_words, labels, 0.0, 1.0) == (1.0, {})


def test_lexical_is_a_text_setting_between_zero_and_one(tiny_encoder, tmp_path):
    with pytest.raises(ConfigError, match=r"model.lexical: 1.5 is not a blend weight"):
        build_config(overrides=["data.text={}", "model.lexical=1.5"])
    with pytest.raises(ConfigError, match=r"model.lexical: 0.3 blends word counts into a text model"):
        build_config(overrides=["model.lexical=0.3"])
    assert build_config(overrides=["data.text={}"]).model.lexical == "auto"  # the text default
    assert build_config(overrides=["data.text={}", "model.lexical=null"]).model.lexical is None
    model = build_model(ModelConfig(backbone=str(tiny_encoder), family="transformers", lexical=0.4), 2)
    assert model.lexical is not None  # a trained run's blend: its scales come with its weights
    assert build_model(ModelConfig(backbone=str(tiny_encoder), family="transformers", lexical="auto"), 2).lexical is None


def test_a_run_blends_after_training_and_predict_applies_it(tiny_text_cfg, tmp_path):
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["model"]["lexical"] = 0.6
    run = tunelab.fit(cfg)
    record = run.metrics["lexical"]
    assert record["scales"] == [pytest.approx(0.4), 0.6] and record["chosen_by"] == "config" and record["share"] == 0.6
    assert run.metrics["test"]["accuracy"] == pytest.approx(record["test"]["blend"]["accuracy"], abs=1e-6)
    assert "lexical: 0.6" in (run.dir / "config.yaml").read_text()
    loaded = load_run(run.dir).model  # the saved model, blend included
    assert loaded.lexical is not None and loaded.lexical.share == 0.6
    for k, v in run.model.lexical.state_dict().items():
        assert torch.equal(loaded.lexical.state_dict()[k], v.cpu())
    held_out = write_text_csv(tmp_path / "held_out.csv", text_rows(10, seed=7))
    assert tunelab.evaluate(run.dir, str(held_out))["n"] == 20
    fresh = tunelab.fit({**cfg, "run": {**cfg["run"], "name": "no-blend"}, "model": {**cfg["model"], "lexical": None}})
    assert "lexical" not in fresh.metrics and load_run(fresh.dir).model.lexical is None
    preds = tunelab.predict(run.dir, texts=["good great fun"])
    assert abs(sum(p for _, p in preds[0].top) - 1.0) < 1e-5


def test_auto_picks_the_lowest_validation_log_loss(tiny_text_cfg):
    run = tunelab.fit(tiny_text_cfg)  # data.text is set: model.lexical is auto
    record = run.metrics["lexical"]
    val = record["val"]
    assert record["chosen_by"] == "validation log-loss"
    lowest = val.get("uncapped", val["blend"])  # the grid's choice, before the cap on its sureness
    assert lowest["log_loss"] <= min(val["network"]["log_loss"], val["words"]["log_loss"]) + 1e-9
    assert f"lexical: {record['share']}" in (run.dir / "config.yaml").read_text()
    assert (load_run(run.dir).model.lexical is not None) == (record["share"] > 0)
    # was 0.996 for nonsense: the validation texts are separable, and the scales were the grid's largest
    assert record["val"]["sureness"]["mean_top_before"] > 0.99 and record["val"]["sureness"]["bound"] == 11 / 12
    assert tunelab.predict(run.dir, texts=["zzz qqq"])[0].top[0][1] < 0.75


def _outcome(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("seconds")
    return (run_dir / "model.safetensors").read_bytes(), metrics


def test_resuming_a_finished_or_refitting_run_keeps_the_blend_it_chose(tiny_text_cfg, tmp_path):
    """Bug: a resume read the share config.yaml records (scales 0, 100 -> share 1.0) as a fixed
    setting, blended at scales 0, 1 and replaced the model: test loss 0.0 -> 0.29."""
    import shutil

    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["data"]["refit"] = "always"
    run = tunelab.fit(cfg)
    record = run.metrics["lexical"]
    assert record["chosen_by"] == "validation log-loss" and record["share"] > 0
    assert json.loads((run.dir / "lexical.json").read_text())["scales"] == record["scales"]
    expected = _outcome(run.dir)
    finished = tmp_path / "finished"
    shutil.copytree(run.dir, finished)
    tunelab.fit(resume=finished)
    assert _outcome(finished) == expected  # the model file bit for bit, every metric
    # killed in the refit: its last epoch and everything after it not yet written
    refitting = tmp_path / "refitting"
    shutil.copytree(run.dir, refitting)
    for name in ("model.safetensors", "metrics.json", "refit/checkpoints/last.safetensors"):
        (refitting / name).unlink()
    tunelab.fit(resume=refitting)
    assert _outcome(refitting) == expected
    assert tunelab.predict(finished, texts=["zzz qqq"])[0].top == tunelab.predict(run.dir, texts=["zzz qqq"])[0].top
