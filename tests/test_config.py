import json

import pytest
import yaml

from tunelab.config import Config, build_config, dump_config, load_config
from tunelab.errors import ConfigError


def test_defaults_are_the_default_recipe_head_then_all():
    cfg = load_config(None)
    assert cfg.recipe == "default"
    assert [s.train for s in cfg.stages] == [["head"], ["all"]]
    assert "stages" not in cfg.model_fields_set  # still unset: regularization: auto may choose them


@pytest.mark.parametrize(
    "recipe,trains", [("fast", [["head"], ["head", {"last_blocks": 3}]]), ("full", [["all"]]), ("probe", [["head"]])]
)
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
    cfg = build_config(
        {},
        [
            "stages.1.lr=3e-4",
            "data.samples_per_class=20",
            "run.progress=false",
            "stages.0.train=[head, {last_blocks: 2}]",
            "model.num_classes=imagenet",
        ],
    )
    assert cfg.stages[1].lr == 3e-4 and cfg.stages[1].lr_scale is None
    assert cfg.data.samples_per_class == 20 and cfg.run.progress is False
    assert cfg.stages[0].train == ["head", {"last_blocks": 2}]
    assert cfg.model.num_classes == "imagenet"


def test_quoted_override_stays_a_string():
    cfg = build_config({}, ['run.name="7"', "run.seed=7", "stages.0.lr=1e-4", "model.backbone='1e3'"])
    assert cfg.run.name == "7" and cfg.run.seed == 7 and cfg.stages[0].lr == 1e-4 and cfg.model.backbone == "1e3"


def test_tune_section_is_checked_and_left_out_of_plain_dumps(tmp_path):
    cfg = build_config(
        {
            "tune": {
                "space": {
                    "stages.0.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                    "regularization.augment": {"choices": ["none", "flip"]},
                }
            }
        }
    )
    assert cfg.tune.metric == "auto" and cfg.tune.space["stages.0.lr"].log
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


# --- hostile and mistaken YAML: a clear error naming the file, never a traceback or 9 GB -----------

LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{x}: &{x} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, x in zip("abcdefgh", "bcdefghi")
)  # 9^9 lols


def test_billion_laughs_config_is_refused_at_once_in_bounded_memory(tmp_path):
    import tracemalloc

    p = tmp_path / "laughs.yaml"
    p.write_text(LAUGHS)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as e:
            load_config(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(e.value).startswith(
        f"{p}: its aliases (*name) expand to more than 100000 values; a config may hold at most 100000 once aliases are expanded"
    )
    assert peak < 20 * 2**20
    # the same in one --set value: a flow sequence of the same nested aliases
    flow = (
        "[&a [1, 1, 1, 1, 1, 1, 1, 1, 1], "
        + ", ".join(f"&{x} [{', '.join([f'*{prev}'] * 9)}]" for prev, x in zip("abcdefgh", "bcdefghi"))
        + "]"
    )
    with pytest.raises(ConfigError, match=r"^--set model.timm_kwargs.x: its aliases \(\*name\) expand to more than"):
        build_config({}, [f"model.timm_kwargs.x={flow}"])


def test_a_config_file_too_large_or_not_a_file_is_refused(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("run:\n  name: x\n" + "# padding\n" * 120_000)
    with pytest.raises(ConfigError, match=rf"^config file {p} is 1200015 bytes; a config may be at most 1048576 bytes"):
        load_config(p)
    fifo = tmp_path / "fifo.yaml"
    __import__("os").mkfifo(fifo)  # reading it would block for ever
    with pytest.raises(ConfigError, match=rf"^config file {fifo} is not a regular file"):
        load_config(fifo)


def test_duplicate_keys_name_the_file_key_and_lines(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("run:\n  seed: 1\ndata:\n  batch_size: 8\n  val_split: 0.1\n  batch_size: 16\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{p}, line 6: key 'batch_size' is given twice in one mapping \(first on "
        r"line 4\); YAML would silently keep the last one: remove one of them$",
    ):
        load_config(p)
    with pytest.raises(ConfigError, match=r"^--set model.timm_kwargs, line 1: key 'a' is given twice"):
        build_config({}, ["model.timm_kwargs={a: 1, a: 2}"])
    # a merge key may override what it merges: that is what it is for
    p.write_text("stages:\n  - &head {train: head, epochs: 1, lr: 0.01}\n  - {<<: *head, lr: 0.001, train: all}\n")
    assert [(s.train, s.lr) for s in load_config(p).stages] == [(["head"], 0.01), (["all"], 0.001)]


@pytest.mark.parametrize("value", ["-1", "4294967296"])
def test_seed_out_of_numpy_range_names_key_value_and_range(tmp_path, value):
    message = rf"run.seed: Value error, {value} is not a seed; valid: an integer from 0 to 4294967295"
    with pytest.raises(ConfigError, match=message):
        build_config({}, [f"run.seed={value}"])
    p = tmp_path / "c.yaml"
    p.write_text(f"run:\n  seed: {value}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(p)
    with pytest.raises(ConfigError, match=message.replace("run.seed", "data.seed")):
        build_config({"data": {"seed": int(value)}})
    assert build_config({}, ["run.seed=4294967295"]).run.seed == 2**32 - 1


@pytest.mark.parametrize("name", ["a/b/c", "..", ".", "", "a\\b", "x" * 201])
def test_run_name_must_be_one_folder_name(tmp_path, name):
    message = "is not a folder name; valid: one folder name (not empty, not '.' or '..', no '/' or '\\', at most 200 bytes)"
    with pytest.raises(ConfigError, match=r"run\.name: ") as e:
        build_config({}, [f"run.name={json.dumps(name)}"])  # a YAML double-quoted string
    assert message in str(e.value) and repr(name) in str(e.value)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"run": {"name": name}}))
    with pytest.raises(ConfigError, match=r"run\.name: ") as e:
        load_config(p)
    assert message in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize(
    "key,value",
    [
        ("stages.0.lr", ".inf"),
        ("stages.0.lr", ".nan"),
        ("stages.0.lr", "-.inf"),
        ("regularization.label_smoothing", ".nan"),
        ("cache.max_memory_gb", ".inf"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"{key}: Input should be a finite number"):
        build_config({}, [f"{key}={value}"])
    p = tmp_path / "c.yaml"
    p.write_text("stages:\n  - lr: .inf\n")
    with pytest.raises(ConfigError, match=rf"{p}:\n  stages.0.lr: Input should be a finite number \(got inf\)"):
        load_config(p)
