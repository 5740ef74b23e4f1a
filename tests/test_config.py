import pytest
import yaml

from tunelab.config import Config, build_config, dump_config, load_config
from tunelab.errors import ConfigError


def test_defaults_are_the_default_recipe_head_then_all():
    cfg = load_config(None)
    assert cfg.recipe == "default"
    assert [s.train for s in cfg.stages] == [["head"], ["all"]]
    assert "stages" not in cfg.model_fields_set  # still unset: regularization: auto may choose them


@pytest.mark.parametrize("recipe,trains", [("fast", [["head"], ["head", {"last_blocks": 3}]]), ("full", [["all"]]),
                                          ("probe", [["head"]])])
def test_a_named_recipe_gives_its_stages(recipe, trains):
    cfg = build_config({"recipe": recipe})
    assert [s.train for s in cfg.stages] == trains
    reread = build_config(yaml.safe_load(dump_config(cfg)))
    assert reread.stages == cfg.stages  # the resolved config keeps the stages it ran


def test_explicit_stages_win_over_the_recipe():
    cfg = build_config({"recipe": "fast", "stages": [{"train": "all", "epochs": 2, "lr": 1e-4}]})
    assert [s.train for s in cfg.stages] == [["all"]]


def test_an_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"recipe: Input should be 'default', 'fast', 'full' or 'probe'"):
        build_config({"recipe": "fastest"})


def test_text_runs_get_the_text_recipe():
    cfg = build_config({"data": {"train": "rotten-tomatoes"}, "recipe": "fast"})
    assert cfg.stages[1].train == ["head", {"last_layers": 4}]


def test_unknown_key_names_it_and_suggests(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  sample_per_class: 20\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "data.sample_per_class: unknown key 'sample_per_class'" in msg
    assert "did you mean 'samples_per_class'" in msg


def test_unknown_key_in_a_stage_is_named_with_its_index():
    with pytest.raises(ConfigError, match=r"stages.1.epoch: unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        build_config({"stages": [{"lr": 1e-3}, {"epoch": 3}]})


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"data.batch_size: .*integer.*\(got 'big'\)"):
        build_config({"data": {"batch_size": "big"}})


def test_invalid_literal_lists_valid_values():
    with pytest.raises(ConfigError, match=r"stages.0.schedule: Input should be 'constant', 'cosine' or 'onecycle'"):
        build_config({"stages": [{"lr": 1e-3, "schedule": "linear"}]})


def test_bad_selector_is_explained():
    with pytest.raises(ConfigError, match=r"last_block.*use 'head', 'backbone', 'all', 'none', \{last_blocks: N\}"):
        build_config({"stages": [{"lr": 1e-3, "train": [{"last_block": 2}]}]})


def test_overrides_parse_yaml_values_and_index_lists():
    cfg = build_config({}, ["stages.1.lr=3e-4", "data.samples_per_class=20", "run.progress=false",
                            "stages.0.train=[head, {last_blocks: 2}]", "model.num_classes=imagenet"])
    assert cfg.stages[1].lr == 3e-4 and cfg.stages[1].lr_scale is None
    assert cfg.data.samples_per_class == 20 and cfg.run.progress is False
    assert cfg.stages[0].train == ["head", {"last_blocks": 2}]
    assert cfg.model.num_classes == "imagenet"


def test_quoted_override_stays_a_string():
    cfg = build_config({}, ['run.name="7"', "run.seed=7", "stages.0.lr=1e-4", "model.backbone='1e3'"])
    assert cfg.run.name == "7" and cfg.run.seed == 7 and cfg.stages[0].lr == 1e-4 and cfg.model.backbone == "1e3"


def test_tune_section_is_checked_and_left_out_of_plain_dumps(tmp_path):
    cfg = build_config({"tune": {"space": {"stages.0.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                                           "regularization.augment": {"choices": ["none", "flip"]}}}})
    assert cfg.tune.metric == "val_accuracy" and cfg.tune.space["stages.0.lr"].log
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg
    assert "tune" not in yaml.safe_load(dump_config(build_config({})))
    with pytest.raises(ConfigError, match=r"tune.space.stages.0.lr: Value error, give either choices or a range"):
        build_config({"tune": {"space": {"stages.0.lr": {"low": 1e-4, "high": 1e-2, "choices": [1e-3]}}}})
    with pytest.raises(ConfigError, match=r"tune.space.stages.0.lr.lo: unknown key 'lo' \(did you mean 'low'\?\)"):
        build_config({"tune": {"space": {"stages.0.lr": {"lo": 1e-4, "high": 1e-2}}}})
    with pytest.raises(ConfigError, match=r"tune.sampler: Input should be 'tpe' or 'random'"):
        build_config({"tune": {"sampler": "grid"}})


def test_override_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        build_config({}, ["data.samples_per_class"])
    with pytest.raises(ConfigError, match=r"stages.5: '5' is not an index of a list with 2 items"):
        build_config({}, ["stages.5.lr=1"])
    with pytest.raises(ConfigError, match=r"data\.bogus: unknown key"):
        build_config({}, ["data.bogus=1"])


def test_lr_and_lr_scale_are_exclusive():
    with pytest.raises(ConfigError, match="either lr or lr_scale"):
        build_config({"stages": [{"lr": 1e-3}, {"lr": 1e-3, "lr_scale": 0.1}]})


def test_first_stage_cannot_scale():
    with pytest.raises(ConfigError, match="first stage needs an absolute lr"):
        build_config({"stages": [{"lr_scale": 0.1}]})


def test_resolved_config_round_trips(tmp_path):
    cfg = build_config({"model": {"head": {"hidden": [{"units": 128, "dropout": 0.5}]}}}, ["stages.0.epochs=3"])
    p = tmp_path / "resolved.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_not_a_mapping_and_not_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)
    p.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_a_binary_config_is_not_valid_yaml_and_a_utf16_one_is_read(tmp_path):
    """Was: a UnicodeDecodeError traceback for a config that is no UTF-8 text (found by tests/test_fuzz.py)."""
    p = tmp_path / "c.yaml"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ConfigError, match=r"c.yaml is not valid YAML: unacceptable character #x0089"):
        load_config(p)
    p.write_bytes("data:\n  image_size: 96\n".encode("utf-16"))  # Windows Notepad's "Unicode"
    assert load_config(p).data.image_size == 96


def test_config_is_a_plain_dataclass_like_model():
    assert isinstance(Config(), Config)


def test_a_stage_override_after_a_recipe_override_edits_that_recipe():
    cfg = build_config({}, ["recipe=fast", "stages.1.epochs=5"])
    assert cfg.stages[1].train == ["head", {"last_blocks": 3}] and cfg.stages[1].epochs == 5
