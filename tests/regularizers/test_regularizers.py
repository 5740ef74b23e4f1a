import json

import pytest
import torch

import tunelab
from tunelab.config import ModelConfig, PenaltyConfig
from tunelab.errors import ConfigError
from tunelab.freezing import select, set_trainable
from tunelab.regularizers import Penalty, build_penalties, pretrained_reference, register_penalty
from tunelab.regularizers.audit import audit_penalty, render_audit
from tunelab.tasks import build_model


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model(ModelConfig(backbone="test_efficientnet", pretrained=False), 4)
    set_trainable(m, select(m, ["all"]))
    return m


def pen(model, **kw):
    cfg = PenaltyConfig(**kw)
    return build_penalties([cfg], model, pretrained_reference(model, [cfg]))[0]


def grads_of(model, value):
    model.zero_grad()
    value.backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_l2sp_gradient_is_2_alpha_times_distance_to_pretrained(model):
    alpha, beta = 0.05, 0.002
    p = pen(model, type="l2sp", strength=alpha, head_strength=beta, params="all")
    w0 = {n: t.detach().clone() for n, t in model.named_parameters()}
    with torch.no_grad():
        for t in model.parameters():
            t.add_(torch.randn_like(t) * 0.1)
    g = grads_of(model, p(model, {}))
    for n, t in model.named_parameters():
        if n.startswith("backbone."):
            torch.testing.assert_close(g[n], 2 * alpha * (t.detach() - w0[n]))
        else:  # the head has no pretrained value: plain L2
            torch.testing.assert_close(g[n], 2 * beta * t.detach())


def test_l2_l1_elastic_gradients(model):
    w = {n: t.detach().clone() for n, t in model.named_parameters()}
    kernels = [n for n, t in model.named_parameters() if t.ndim >= 2]
    g = grads_of(model, pen(model, type="l2", strength=0.3)(model, {}))
    for n in kernels:
        torch.testing.assert_close(g[n], 2 * 0.3 * w[n])
    assert all(g[n] is None for n in w if n not in kernels)  # params: kernels leaves biases and norms alone
    g = grads_of(model, pen(model, type="l1", strength=0.2)(model, {}))
    for n in kernels:
        torch.testing.assert_close(g[n], 0.2 * torch.sign(w[n]))
    g = grads_of(model, pen(model, type="elastic", strength=0.5, l1_ratio=0.25)(model, {}))
    for n in kernels:
        torch.testing.assert_close(g[n], 0.5 * (0.25 * torch.sign(w[n]) + 0.75 * 2 * w[n]))


def test_params_kinds_and_layers(model):
    biases = pen(model, type="l2", strength=1.0, params="biases", layers="head")
    assert [n for n, _ in biases.params] == ["head.fc.bias"]
    last = pen(model, type="l1", strength=1.0, layers=[{"last_blocks": 1}], params="both")
    assert last.params and all(
        n.startswith(("backbone.model.blocks.4", "backbone.model.conv_head", "backbone.model.bn2")) for n, _ in last.params
    )


def test_selector_matching_nothing_raises(model):
    with pytest.raises(ConfigError, match=r"regularization.penalties.0 \(l2\).layers: regex 'nothing' matches no parameter"):
        pen(model, type="l2", strength=1.0, layers=[{"regex": "nothing"}])
    no_bias = build_model(ModelConfig(backbone="test_efficientnet", pretrained=False), 4)
    no_bias.head.fc = torch.nn.Linear(no_bias.head.fc.in_features, 4, bias=False)
    with pytest.raises(ConfigError, match=r"penalties.0 \(l2\): layers: \['head'\] with params: biases covers no parameter"):
        build_penalties([PenaltyConfig(type="l2", strength=1.0, layers=["head"], params="biases")], no_bias, {})


def test_unknown_penalty_type_lists_valid(model):
    with pytest.raises(ConfigError, match=r"unknown penalty 'l3'; valid: l2, l1, elastic, l2sp, activity"):
        build_penalties([PenaltyConfig(type="l3", strength=1.0)], model, {})


def test_duplicate_penalty_name_is_an_error():
    with pytest.raises(ValueError, match="registered already"):
        register_penalty("l2")(Penalty)


def test_penalty_on_layers_frozen_in_every_stage_is_an_error(tiny_cfg):
    tiny_cfg["regularization"] = {"penalties": [{"type": "l2", "strength": 1e-3, "layers": [{"regex": "blocks\\.0\\."}]}]}
    with pytest.raises(
        ConfigError,
        match=r"penalties.0 \(l2\): layers: \[\{'regex': 'blocks\\\\.0\\\\.'\}\] covers only "
        r"parameters that are frozen in every stage",
    ):
        tunelab.fit(tiny_cfg)


def test_audit_lists_every_penalty_with_nonzero_value_and_gradient(model):
    cfgs = [PenaltyConfig(type=t, strength=0.01, params="all") for t in ("l1", "l2", "elastic", "l2sp", "activity")]
    pens = build_penalties(cfgs, model, pretrained_reference(model, cfgs))
    ctx = {}
    model.head.pool.register_forward_hook(lambda m, i, o: ctx.__setitem__("pooled", o))
    model.eval()
    model(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8))
    rows = [audit_penalty(p, model, ctx) for p in pens]
    assert [r.name for r in rows] == ["l1", "l2", "elastic", "l2sp", "activity"]
    assert all(r.value and r.value > 0 for r in rows)
    assert all(r.reaches_gradient.startswith("yes") for r in rows)
    text = render_audit(rows)
    assert all(name in text for name in ("l1", "l2sp", "activity", "reaches gradient"))


def test_audit_of_a_penalty_whose_layers_are_frozen_now(model):
    p = pen(model, type="l2sp", strength=0.1, layers="backbone")
    set_trainable(model, select(model, ["head"]))
    assert audit_penalty(p, model, {}).reaches_gradient.startswith("inactive")
    set_trainable(model, select(model, ["all"]))
    row = audit_penalty(p, model, {})
    assert row.value == 0.0 and row.reaches_gradient == "yes (probed next to w0)"  # at w0 exactly
    assert all(torch.equal(a, b) for a, b in zip(p.reference.values(), [t for n, t in p.params]))  # probe undone


def test_penalties_are_in_the_training_loss_and_logged(tiny_cfg):
    """The Keras trap: a configured penalty must change training. A strong L2-SP keeps the weights
    near the pretrained ones; without it they move further."""
    tiny_cfg["stages"] = [{"train": "all", "epochs": 3, "lr": 3e-2, "weight_decay": 0.0}]

    def distance(cfg):
        start = {}
        run = tunelab.fit(
            cfg,
            hooks={
                "on_stage_start": lambda trainer, stage: start.update(
                    {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
                )
            },
        )
        d = sum((p.detach() - start[n]).pow(2).sum() for n, p in run.model.named_parameters() if n.startswith("backbone"))
        return float(d), run

    free, _ = distance(tiny_cfg)
    tiny_cfg["run"]["name"] = "l2sp"
    tiny_cfg["regularization"] = {"penalties": [{"type": "l2sp", "strength": 5.0, "params": "all"}]}
    held, run = distance(tiny_cfg)
    assert held < free / 5
    rows = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert all("penalty_l2sp" in r and r["penalty_l2sp"] > 0 for r in rows)
    log = (run.dir / "log.txt").read_text()
    assert "regularization audit" in log and "l2sp" in log


def test_audit_lists_dropout_drop_path_and_weight_decay_with_activity():
    from tunelab.config import RegularizationConfig, StageConfig
    from tunelab.freezing import set_train_mode
    from tunelab.regularizers.audit import other_regularizers

    m = build_model(ModelConfig(backbone="test_efficientnet", pretrained=False, drop_path_rate=0.2, head={"dropout": 0.5}), 4)
    set_trainable(m, select(m, ["head", {"last_blocks": 1}]))
    set_train_mode(m, train_bn=False)
    reg = RegularizationConfig(augment="light", label_smoothing=0.1, mixup={"mixup_alpha": 0.2})
    rows = {r.name: r for r in other_regularizers(m, reg, StageConfig(lr=1e-3))}
    assert set(rows) == {"dropout", "drop_path", "augment", "label_smoothing", "mixup", "weight_decay"}
    assert rows["dropout"].reaches_gradient == "yes"
    n_paths = int(rows["drop_path"].covers.split()[0])
    assert f"({n_paths} active)" not in rows["drop_path"].covers  # frozen blocks keep drop-path off
    assert "(1 active)" in rows["drop_path"].covers
