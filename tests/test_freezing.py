import pytest
import torch
from torch import nn

import tunelab
from tunelab.config import ModelConfig
from tunelab.errors import ConfigError
from tunelab.freezing import layer_rows, param_totals, render_layer_table, select, set_train_mode, set_trainable
from tunelab.tasks import build_model


@pytest.fixture
def model():
    return build_model(ModelConfig(backbone="test_efficientnet", pretrained=False), 5)


def groups(model):
    return dict(model.groups())


def test_named_selectors(model):
    names = [n for n, _ in model.named_parameters()]
    assert select(model, ["head"]) == {n for n in names if n.startswith("head.")}
    assert select(model, ["backbone"]) | select(model, ["head"]) == set(names) == select(model, ["all"])
    assert select(model, ["none"]) == set()


def test_last_blocks_follow_group_matcher(model):
    g = [(label, names) for label, names in model.groups() if label.startswith("backbone.")]
    two = select(model, [{"last_blocks": 2}])
    assert two == set(g[-1][1]) | set(g[-2][1])
    assert select(model, [{"last_blocks": 0}]) == set()


def test_last_blocks_too_many_says_how_many(model):
    n = len([1 for label, _ in model.groups() if label.startswith("backbone.")])
    with pytest.raises(ConfigError, match=rf"stages.1.train: last_blocks: 99 but the backbone has {n} blocks .*use at most {n}"):
        select(model, [{"last_blocks": 99}], where="stages.1.train")


def test_regex_selector_and_errors(model):
    assert select(model, [{"regex": r"blocks\.3\..*conv"}]) == {
        n for n, _ in model.named_parameters() if n.startswith("backbone.model.blocks.3.") and "conv" in n
    }
    with pytest.raises(ConfigError, match=r"regex 'nomatch\\\\d' matches no parameter; names look like backbone.model"):
        select(model, [{"regex": r"nomatch\d"}])
    with pytest.raises(ConfigError, match="is not a valid regular expression"):
        select(model, [{"regex": "("}])


def test_bn_policy_modes(model):
    set_trainable(model, select(model, ["head", {"last_blocks": 1}]))
    set_train_mode(model, train_bn=True)
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert not bns["backbone.model.bn1"].training  # frozen stem: inference mode
    assert bns["backbone.model.bn2"].training  # trainable top block, train_bn
    set_train_mode(model, train_bn=False)
    assert not any(m.training for m in bns.values())
    assert model.head.training


def test_frozen_modules_run_in_eval_mode(model):
    set_trainable(model, select(model, ["head"]))
    set_train_mode(model, train_bn=True)
    assert not model.backbone.training and model.head.training


def test_layer_table_rows_and_totals(model):
    set_trainable(model, select(model, ["head", {"last_blocks": 1}]))
    set_train_mode(model, train_bn=False)
    rows = layer_rows(model, 1e-3)
    assert rows[0].name == "backbone.stem" and rows[0].trainable == "no" and rows[0].bn == "eval" and rows[0].lr is None
    assert rows[-1].name == "head.fc" and rows[-1].trainable == "yes" and rows[-1].bn == "-" and rows[-1].lr == 1e-3
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters())
    text = render_layer_table(rows, param_totals(model), "stage 1")
    t, f = param_totals(model)
    assert f"{t:,} trainable, {f:,} frozen" in text and "backbone.blocks.0.0" in text


def _bn_buffers(sd, prefixes):
    return {
        k: v.clone()
        for k, v in sd.items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")) and k.startswith(prefixes)
    }


def test_frozen_bn_statistics_stay_bit_identical(tiny_cfg):
    """BN in frozen blocks keeps its running statistics exactly, even while the blocks above train
    their BN statistics (train_bn: true)."""
    tiny_cfg["stages"] = [
        {"train": "head", "epochs": 2, "lr": 1e-2},
        {"train": ["head", {"last_blocks": 2}], "epochs": 2, "lr": 1e-2, "train_bn": True},
    ]
    start = {}

    def snapshot(trainer, stage):
        if stage == 0:
            start.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    run = tunelab.fit(tiny_cfg, hooks={"on_stage_start": snapshot})
    end = run.model.state_dict()
    labels = [label for label, _ in run.model.groups() if label.startswith("backbone.")]
    frozen_prefixes = (
        "backbone.model.conv_stem",
        "backbone.model.bn1",
        "backbone.model.blocks.0",
        "backbone.model.blocks.1",
        "backbone.model.blocks.2",
    )
    assert labels[-2] == "backbone.blocks.3.0"  # the two trained groups are blocks.3.0 and blocks.4.0+head conv
    frozen = _bn_buffers(start, frozen_prefixes)
    assert frozen and all(torch.equal(end[k], v) for k, v in frozen.items())
    trained = _bn_buffers(start, ("backbone.model.blocks.4", "backbone.model.bn2"))
    assert any(not torch.equal(end[k], v) for k, v in trained.items() if "running" in k)


def test_train_bn_false_freezes_all_bn_statistics(tiny_cfg):
    tiny_cfg["stages"] = [{"train": "all", "epochs": 2, "lr": 1e-2, "train_bn": False}]
    start = {}
    run = tunelab.fit(
        tiny_cfg,
        hooks={
            "on_stage_start": lambda trainer, stage: start.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
        },
    )
    end = run.model.state_dict()
    bn = _bn_buffers(start, ("backbone",))
    assert bn and all(torch.equal(end[k], v) for k, v in bn.items())
    assert not torch.equal(end["backbone.model.bn1.weight"], start["backbone.model.bn1.weight"])  # affine still trains


def test_last_blocks_of_swin_are_its_last_groups_not_its_stages():
    """Swin's groups are named layers.N like a text encoder's layers; they are timm blocks all the
    same, so last_blocks: 2 is the last two groups (it was the last two stages, 96 % of the model)."""
    model = build_model(ModelConfig(backbone="swin_tiny_patch4_window7_224", pretrained=False), 5)
    g = [(label, names) for label, names in model.groups() if label.startswith("backbone.")]
    assert [label for label, _ in g[-2:]] == ["backbone.layers.3", "backbone.layers.3+norm"]  # the last stage's 2 blocks
    assert select(model, [{"last_blocks": 2}]) == set(g[-2][1] + g[-1][1])
    chosen = sum(p.numel() for n, p in model.named_parameters() if n in select(model, [{"last_blocks": 2}]))
    assert chosen < 0.6 * sum(p.numel() for p in model.parameters())
