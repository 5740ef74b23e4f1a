"""Text runs through the engine on a tiny random BERT: named groups and freezing, layer-wise lr
decay, the freeze-boundary cache (equal to no cache, never stale), penalties, predict and evaluate."""

import json
from types import SimpleNamespace

import pytest
import torch

import tunelab
from conftest import text_rows, write_text_csv
from tunelab.cli import main
from tunelab.config import ModelConfig, StageConfig, build_config
from tunelab.engine.optim import make_optimizer
from tunelab.errors import ConfigError
from tunelab.freezing import layer_rows, lr_scales, select, set_train_mode, set_trainable
from tunelab.tasks import build_model
from tunelab.text.cache import CachedStates, TextBoundary, cache_key, find_text_boundary, run_prefix, run_tail
from tunelab.text.data import Tokens, load_text_data


def _model(tiny_encoder, pooling="mean"):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=str(tiny_encoder), family="transformers", head={"pooling": pooling})
    return build_model(cfg, 2)


def _tokens():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 14, 15, 3, 0, 0], [2, 16, 3, 0, 0, 0]])
    return Tokens(ids, torch.tensor([6, 4, 3]))


def test_named_groups_and_selectors(tiny_encoder):
    model = _model(tiny_encoder)
    labels = [g for g, _ in model.groups()]
    assert labels == ["backbone.embeddings", "backbone.layers.0", "backbone.layers.1", "backbone.layers.2", "head.fc"]
    assert sum(len(n) for _, n in model.groups()) == len(list(model.parameters()))
    top = select(model, [{"last_layers": 1}])
    assert top == set(dict(model.groups())["backbone.layers.2"])
    assert select(model, [{"last_blocks": 2}]) == top | set(dict(model.groups())["backbone.layers.1"])
    with pytest.raises(ConfigError, match=r"last_layers: 4 but the backbone has 3 layers \(backbone.layers.0 \.\.\. "):
        select(model, [{"last_layers": 4}])
    pooler = _model(tiny_encoder, "pooler")  # the pooler comes along with the top layers
    assert [g for g, _ in pooler.groups()][-2] == "backbone.pooler"
    assert set(dict(pooler.groups())["backbone.pooler"]) <= select(pooler, [{"last_layers": 1}])


def test_frozen_layers_run_in_eval_mode(tiny_encoder):
    model = _model(tiny_encoder)
    set_trainable(model, select(model, ["head", {"last_layers": 1}]))
    set_train_mode(model, train_bn=False)
    layers = model.backbone.layers
    assert not layers[0].training and not model.backbone.model.embeddings.training  # no dropout in frozen parts
    assert layers[2].training and all(m.training for m in layers[2].modules())


def test_layer_wise_lr_decay_for_text_and_images(tiny_encoder):
    model = _model(tiny_encoder)
    set_trainable(model, select(model, ["all"]))
    stage = StageConfig(train=["all"], lr=1e-3, layer_decay=0.5)
    opt = make_optimizer(model, stage, 1e-3)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    groups = dict(model.groups())
    params = dict(model.named_parameters())
    expect = {"head.fc": 1e-3, "backbone.layers.2": 5e-4, "backbone.layers.1": 2.5e-4, "backbone.embeddings": 6.25e-5}
    for label, lr in expect.items():
        assert [lr_of[id(params[n])] for n in groups[label]] == pytest.approx([lr] * len(groups[label]))
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # the logged lr is the head's
    rows = {r.name: r.lr for r in layer_rows(model, 1e-3, lr_scales(model, 0.5))}
    assert rows["backbone.layers.1"] == pytest.approx(2.5e-4)
    image = build_model(ModelConfig(backbone="test_efficientnet", pretrained=False), 3)
    scales = lr_scales(image, 0.8)
    backbone = [g for g, _ in image.groups() if g.startswith("backbone.")]
    assert scales[backbone[-1]] == pytest.approx(0.8) and scales[backbone[0]] == pytest.approx(0.8 ** len(backbone))


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "pooler"])
@pytest.mark.parametrize("train, start", [(["head"], None), (["head", {"last_layers": 1}], 2), (["head", {"last_layers": 3}], 0)])
def test_cached_prefix_then_tail_equals_the_whole_model(tiny_encoder, pooling, train, start):
    model = _model(tiny_encoder, pooling).eval()
    set_trainable(model, select(model, train))
    b = find_text_boundary(model)
    assert b == (TextBoundary(3, True) if start is None else TextBoundary(start, False))
    tok = _tokens()
    with torch.no_grad():
        full = model(tok)
        h = run_prefix(model, b, tok)
        # cached rows are zero past each text's end and cut to the batch's longest text
        if h.ndim == 3:
            h = h * tok.mask.unsqueeze(-1)
        torch.testing.assert_close(run_tail(model, b, h, tok), full, rtol=1e-5, atol=1e-6)
        h_sub, sub = CachedStates(h, tok)[torch.tensor([1, 2])]
        assert sub.ids.shape[1] == 4 and (h_sub.ndim == 2 or h_sub.shape[1] == 4)
        torch.testing.assert_close(run_tail(model, b, h_sub, sub), full[[1, 2]], rtol=1e-5, atol=1e-6)


def test_no_boundary_when_the_embeddings_train(tiny_encoder):
    model = _model(tiny_encoder)
    set_trainable(model, select(model, ["all"]))
    assert find_text_boundary(model) is None


def test_cache_key_covers_weights_boundary_tokens_dtype_and_seed(tiny_encoder):
    model = _model(tiny_encoder)
    set_trainable(model, select(model, ["head", {"last_layers": 1}]))
    b, tok = find_text_boundary(model), _tokens()
    base = cache_key(model, b, tok, torch.float32, 0)
    assert cache_key(model, b, Tokens(tok.ids.clone(), tok.lengths.clone()), torch.float32, 0) == base
    other = tok.ids.clone()
    other[0, 1] = 12
    assert cache_key(model, b, Tokens(other, tok.lengths), torch.float32, 0) != base  # one token id
    assert cache_key(model, b, tok, torch.bfloat16, 0) != base
    assert cache_key(model, b, tok, torch.float32, 1) != base
    assert cache_key(model, TextBoundary(1, False), tok, torch.float32, 0) != base
    with torch.no_grad():  # a weight in the frozen prefix
        model.backbone.layers[1].output.dense.weight.mul_(1.0001)
    assert cache_key(model, b, tok, torch.float32, 0) != base
    key = cache_key(model, b, tok, torch.float32, 0)
    with torch.no_grad():  # a weight past the boundary does not feed the cache
        model.backbone.layers[2].output.dense.weight.mul_(1.0001)
    assert cache_key(model, b, tok, torch.float32, 0) == key


def test_a_shared_cache_is_reused_and_a_stale_one_is_not(tiny_text_cfg, tmp_path):
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["cache"] = {"folder": str(tmp_path / "shared"), "max_memory_gb": 0.0}  # file cache shared by runs
    cfg["stages"] = [cfg["stages"][0]]
    first = tunelab.fit(cfg)
    cfg["run"]["name"] = "again"
    again = tunelab.fit(cfg)
    assert "(computed in" in (first.dir / "log.txt").read_text()
    assert "(reused in" in (again.dir / "log.txt").read_text()
    cfg["run"]["name"] = "longer"
    cfg["data"]["text"]["max_length"] = 6  # other token ids: the cached features are stale
    longer = tunelab.fit(cfg)
    assert "(computed in" in (longer.dir / "log.txt").read_text()
    assert len(list((tmp_path / "shared").glob("*.npy"))) == 4  # train + val, for each of the two tokenizations


def test_penalties_and_audit_reach_the_encoder(tiny_text_cfg):
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["regularization"] = {
        "penalties": [
            {"type": "l2sp", "strength": 0.1, "layers": "all", "params": "all"},
            {"type": "activity", "strength": 1e-3, "layers": "backbone"},
        ]
    }
    run = tunelab.fit(cfg)
    audit = json.loads((run.dir / "stages.json").read_text())["1"]["audit"]
    l2sp = next(x for x in audit.splitlines() if x.startswith("l2sp"))
    activity = next(x for x in audit.splitlines() if x.startswith("activity"))
    assert l2sp.rstrip().endswith(("yes", "yes (probed next to w0)")) and activity.rstrip().endswith("yes")
    assert all(r["penalty_l2sp"] > 0 for r in run.history if r["stage"] == 1)


def test_fit_then_predict_evaluate_and_report(tiny_text_cfg, tmp_path, capsys):
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["stages"] = [
        {"train": "head", "epochs": 5, "lr": 3e-2},  # enough for the tiny random encoder
        {"train": "all", "epochs": 8, "lr": 3e-3},
    ]  # to learn the sentiment words
    run = tunelab.fit(cfg)
    assert run.metrics["test"]["accuracy"] >= 0.75, run.metrics["test"]
    assert (
        "most confidently wrong validation texts" in (run.dir / "report.html").read_text()
        or json.loads((run.dir / "wrong_texts.json").read_text()) == []
    )
    capsys.readouterr()
    assert main(["predict", str(run.dir), "--text", "good great fun", "--text", "bad awful dull", "--top-k", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["--text 1: good great fun", out[1], "--text 2: bad awful dull", out[3]]
    assert out[1].endswith("pos") and out[3].endswith("neg")
    lines = tmp_path / "new.txt"
    lines.write_text("superb and charming\n\ntedious and bland\n")
    preds = tunelab.predict(run.dir, [str(lines)])
    assert [p.path for p in preds] == [f"{lines}:1", f"{lines}:3"] and preds[0].top[0][0] == "pos"
    held_out = write_text_csv(tmp_path / "held_out.csv", text_rows(10, seed=7))
    metrics = tunelab.evaluate(run.dir, str(held_out))
    assert metrics["n"] == 20 and metrics["accuracy"] >= 0.75
    assert main(["predict", str(run.dir)]) == 2  # nothing to predict: a clear error
    assert "give image files or folders, or for a text model --text" in capsys.readouterr().err


def test_predict_text_on_an_image_run_is_an_error(tiny_cfg):
    cfg = json.loads(json.dumps(tiny_cfg))
    cfg["stages"] = [{"train": "head", "epochs": 1, "lr": 1e-3}]
    run = tunelab.fit(cfg)
    with pytest.raises(tunelab.errors.DataError, match="--text needs a text model"):
        tunelab.predict(run.dir, texts=["hello"])


def test_batches_group_texts_of_similar_length_and_inference_keeps_the_order(tiny_text_cfg):
    from tunelab.engine.device import predict_logits
    from tunelab.text.loop import TextLoop

    cfg = build_config(tiny_text_cfg)
    splits = load_text_data(cfg.data)
    trainer = SimpleNamespace(cfg=cfg, splits=splits, model=None)  # only the batching: no run folder, no model
    shuffle = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))

    def epoch_order(epoch):
        return TextLoop(trainer).epoch_order(shuffle, 0, epoch)

    order = epoch_order(0)
    assert sorted(order.tolist()) == list(range(len(splits.train)))
    assert torch.equal(order, epoch_order(0)) and not torch.equal(order, epoch_order(1))
    bs = cfg.data.batch_size
    lengths = splits.train.tokens.lengths[order]
    padded = sum(int(lengths[i : i + bs].max()) * len(lengths[i : i + bs]) for i in range(0, len(order), bs))
    assert padded <= sum(
        int(splits.train.tokens.lengths[i : i + bs].max()) * len(lengths[i : i + bs]) for i in range(0, len(order), bs)
    )
    tok = splits.test.tokens
    model = build_model(cfg.model, 2).eval()
    sorted_logits = predict_logits(model, tok, 4, torch.device("cpu"))
    with torch.no_grad():
        one_by_one = torch.cat([model(tok[i : i + 1]) for i in range(len(tok))])
    torch.testing.assert_close(sorted_logits, one_by_one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("train", [["head"], ["head", {"last_layers": 1}]])
def test_a_windowed_text_is_the_mean_of_its_windows_with_and_without_the_cache(tiny_encoder, train):
    model = _model(tiny_encoder).eval()
    set_trainable(model, select(model, train))
    plain = _tokens()
    tok = Tokens(plain.ids, plain.lengths, None, torch.tensor([0, 2, 3]))  # text 0: rows 0-1; text 1: row 2
    b = find_text_boundary(model)
    with torch.no_grad():
        rows = model.backbone(plain)
        torch.testing.assert_close(model.backbone(tok), torch.stack([rows[:2].mean(0), rows[2]]))
        full = model(tok)
        h = run_prefix(model, b, tok)
        if h.ndim == 3:
            assert h.shape[0] == 3  # one cached row a window
            h = h * tok.mask.unsqueeze(-1)
        h_sub, sub = CachedStates(h, tok)[torch.tensor([1, 0])]
        torch.testing.assert_close(run_tail(model, b, h_sub, sub), full[[1, 0]], rtol=1e-5, atol=1e-6)


def test_long_texts_train_and_predict_as_windows(tiny_text_cfg, tmp_path):
    longs = [" ".join(["good", "film"] * (20 + i)) for i in range(3)]  # three different texts: copies are removed
    rows = text_rows(12) + [r for t in longs for r in ((t, "pos"), (t.replace("good", "bad"), "neg"))]
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["data"]["train"] = str(write_text_csv(tmp_path / "long.csv", rows))
    cfg["data"]["text"]["max_windows"] = 3
    run = tunelab.fit(cfg)
    log = (run.dir / "log.txt").read_text()
    assert "read as 3-3 windows of 16 tokens" in log and "cache: the hidden states entering layer 2" in log
    assert run.metrics["test"]["accuracy"] >= 0.0 and len(run.history) == 4


def test_a_contrastive_stage_shapes_the_features_for_the_head_stage(tiny_text_cfg):
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["stages"] = [
        {"name": "pairs", "objective": "contrastive", "train": ["all"], "epochs": 2, "lr": 1e-3},
        {"name": "head", "train": "head", "epochs": 2, "lr": 1e-2},
    ]
    run = tunelab.fit(cfg)
    log = (run.dir / "log.txt").read_text()
    assert "cache: pooled features" in log  # the head stage still trains on cached features
    assert [r["stage"] for r in run.history] == [0, 0, 1, 1]
    assert all(0.0 <= r["train_accuracy"] <= 1.0 for r in run.history)
    cfg["stages"][0]["early_stopping"] = {"patience": 2}
    with pytest.raises(ConfigError, match="a contrastive stage has no validation accuracy"):
        build_config(cfg)


def test_a_probe_stage_sets_the_head_to_the_logistic_regression_of_the_frozen_features(tiny_text_cfg):
    from tunelab.engine.probe import linear_probe, pooled_features

    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["stages"] = [{"name": "probe", "objective": "probe", "train": "head"}]
    run = tunelab.fit(cfg)
    assert len(run.history) == 1 and run.history[0]["lr"] == 0.0 and "val_accuracy" in run.history[0]
    splits = load_text_data(build_config(cfg).data)  # the run's own split (seeded); the encoder stayed frozen
    x = pooled_features(run.model, splits.train.inputs, 64, torch.device("cpu"))
    weight, _ = linear_probe(x, splits.train.labels.numpy(), 2, seed=0)
    torch.testing.assert_close(run.model.head.fc.weight, torch.from_numpy(weight), rtol=1e-4, atol=1e-5)
    for bad, match in [
        ({"epochs": 3}, "fitted in one go: epochs is 1"),
        ({"train": ["head", {"last_layers": 1}]}, "trains the head only"),
    ]:
        cfg["stages"] = [{"name": "probe", "objective": "probe", "train": "head", **bad}]
        with pytest.raises(ConfigError, match=match):
            tunelab.fit(cfg)
