"""tunelab._yaml: the limits every user YAML (config files, --set values) is read with."""

from __future__ import annotations

import pytest
import yaml

from tunelab._yaml import MAX_BYTES, MAX_NODES, load_yaml
from tunelab.errors import ConfigError


def test_plain_yaml_anchors_and_merge_keys_still_load():
    text = "base: &b {lr: 0.01, epochs: 2}\nstages: [*b, {<<: *b, lr: 0.001}]\n"
    assert load_yaml(text, "c.yaml") == {
        "base": {"lr": 0.01, "epochs": 2},
        "stages": [{"lr": 0.01, "epochs": 2}, {"lr": 0.001, "epochs": 2}],
    }
    assert load_yaml(b"a: 1\n", "c.yaml") == {"a": 1} and load_yaml("", "c.yaml") is None


def test_expansion_is_counted_with_each_use_of_an_alias():
    def doc(uses: int) -> str:  # a list of 1000 values, then a list that names it `uses` times
        return "a: &a [" + ", ".join(["1"] * 999) + "]\nb: [" + ", ".join(["*a"] * uses) + "]\n"

    assert len(load_yaml(doc(90), "c.yaml")["b"]) == 90  # about 91000 values
    with pytest.raises(ConfigError, match=rf"^c.yaml: its aliases \(\*name\) expand to more than {MAX_NODES} values"):
        load_yaml(doc(101), "c.yaml")


def test_an_alias_inside_its_own_node_is_refused():
    with pytest.raises(ConfigError, match=r"^c.yaml, line 2: an alias refers to a node that contains it"):
        load_yaml("x: 1\ny: &a {z: [*a]}\n", "c.yaml")


def test_deep_nesting_and_size_are_errors_not_tracebacks():
    with pytest.raises(ConfigError, match=r"^c.yaml: its values are nested too deeply to read"):
        load_yaml("[" * 50_000, "c.yaml")
    with pytest.raises(ConfigError, match=rf"^--set x is {MAX_BYTES + 1} bytes; a config may be at most {MAX_BYTES}"):
        load_yaml("a" * (MAX_BYTES + 1), "--set x")


def test_syntax_errors_stay_yaml_errors_for_the_caller():
    with pytest.raises(yaml.YAMLError):
        load_yaml("a: [unclosed", "c.yaml")
    with pytest.raises(yaml.YAMLError):  # not UTF-8: YAML's reader says where
        load_yaml("a: caf\xe9\n".encode("latin-1"), "c.yaml")
