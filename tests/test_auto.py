import pytest
import yaml

import tunelab
from tunelab.auto import TABLE, apply_auto, choose
from tunelab.config import build_config


@pytest.mark.parametrize("per_class,expected", [(5, 0), (10, 0), (11, 1), (50, 1), (200, 2), (5000, 3)])
def test_table_rows_by_images_per_class(per_class, expected):
    assert choose(per_class, 10) == TABLE[expected]


def test_fewer_data_means_stronger_regularization():
    strengths = [r.l2sp for r in TABLE]
    dropouts = [r.dropout for r in TABLE]
    assert strengths == sorted(strengths, reverse=True) and dropouts == sorted(dropouts, reverse=True)


def test_many_classes_shorten_epochs():
    assert choose(20, 1000).epochs < choose(20, 10).epochs


def test_auto_fills_only_unset_fields():
    cfg = build_config({"regularization": "auto", "model": {"head": {"dropout": 0.1}}})
    out, chosen = apply_auto(cfg, 10, 10)
    assert out.model.head.dropout == 0.1 and "model.head.dropout" not in chosen
    assert out.regularization.penalties[0].type == "l2sp" and out.regularization.penalties[0].strength == TABLE[0].l2sp
    assert out.regularization.augment == "flip"
    assert out.stages[1].train == ["all"] and out.stages[1].epochs == 12
    again, chosen_again = apply_auto(build_config(out.model_dump(mode="json")), 10, 10)
    assert again == out and chosen_again == {}  # the resolved config is stable


def test_auto_choices_are_printed_and_saved(tiny_cfg, capsys):
    tiny_cfg["regularization"] = "auto"
    tiny_cfg["stages"][1]["epochs"] = 1
    run = tunelab.fit(tiny_cfg)
    out = capsys.readouterr().out
    assert "regularization: auto chose" in out and "regularization.augment: flip" in out
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert saved["regularization"]["penalties"][0]["type"] == "l2sp"
    assert saved["model"]["head"]["dropout"] == TABLE[0].dropout
    assert saved["stages"][1]["epochs"] == 1  # the user's stages stay as given


def test_min_steps_stretch_epochs_on_a_small_training_set():
    from tunelab.auto import apply_min_steps

    cfg = build_config(
        {
            "data": {"batch_size": 32},
            "stages": [
                {"train": "head", "epochs": 4, "lr": 3e-3, "min_steps": 20},
                {"train": "all", "epochs": 16, "lr": 3e-4, "min_steps": 60},
            ],
        }
    )
    out, chosen = apply_min_steps(cfg, 40)  # 2 steps an epoch
    assert [s.epochs for s in out.stages] == [10, 30]
    assert "min_steps 20 at 2 steps an epoch" in chosen["stages.0.epochs"]
    big, none = apply_min_steps(cfg, 4000)  # 125 steps an epoch: the recipe's epochs stand
    assert [s.epochs for s in big.stages] == [4, 16] and none == {}
    again, _ = apply_min_steps(out, 40)
    assert again == out  # a resumed run reads the stretched config and leaves it
