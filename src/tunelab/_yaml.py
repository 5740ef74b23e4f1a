"""YAML of user files (configs, ``--set`` values) read safely: PyYAML's safe loader, plus limits
on what no config needs and a hostile file uses.

- at most :data:`MAX_BYTES` of text: a config is a few KB;
- at most :data:`MAX_NODES` values once aliases (``*name``) are expanded, and no alias inside the
  node it names: a "billion laughs" file is a few lines whose nested aliases expand to 10^9 values
  (the composed graph stays small, but validating or copying it expands it);
- no key given twice in one mapping: YAML would keep the last one without a word.

    data = load_yaml(path.read_bytes(), str(path))   # ConfigError naming the file, line and limit
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tunelab.errors import ConfigError

MAX_BYTES = 1 << 20  # 1 MiB
MAX_NODES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *base` may override keys: not a duplicate


class _Loader(yaml.SafeLoader):
    """SafeLoader that checks each mapping's keys as it is composed (before merge keys are folded
    in) and the document's expanded size before anything is constructed."""

    def __init__(self, stream: str | bytes, source: str) -> None:
        super().__init__(stream)
        self.source = source

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node: MappingNode = super().compose_mapping_node(anchor)
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first_line:
                raise ConfigError(
                    f"{self.source}, line {line}: key '{key.value}' is given twice in one mapping (first "
                    f"on line {first_line[key.tag, key.value]}); YAML would silently keep the last one: "
                    "remove one of them"
                )
            first_line[key.tag, key.value] = line
        return node

    def compose_document(self) -> Node:
        node: Node = super().compose_document()
        _check_expanded_size(node, self.source)
        return node


def _check_expanded_size(root: Node, source: str) -> None:
    """Count the document's values as they would be once every alias is expanded (each shared node
    counted once per use, computed once): refuse more than MAX_NODES, and an alias to a node that
    contains it (a structure without end)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise ConfigError(
                f"{source}, line {node.start_mark.line + 1}: an alias refers to a node that contains "
                "it (a structure without end); a config is a tree of values: write it out"
            )
        open_nodes.add(id(node))
        if isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = list(node.value) if isinstance(node, SequenceNode) else []
        total = 1 + sum(size(child) for child in children)
        if total > MAX_NODES:
            raise ConfigError(
                f"{source}: its aliases (*name) expand to more than {MAX_NODES} values; a config may "
                f"hold at most {MAX_NODES} once aliases are expanded (a file whose nested aliases "
                "multiply, a 'billion laughs', is refused): write the values out or use fewer aliases"
            )
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


def load_yaml(data: str | bytes, source: str) -> Any:
    """The value of one YAML document (bytes: UTF-8/16/32 as YAML detects them), checked as the
    module says. A refused document is a ConfigError naming ``source`` (a file, ``--set KEY``) and
    what is allowed; YAML that does not parse raises yaml.YAMLError for the caller to word."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{source} is {len(data)} bytes; a config may be at most {MAX_BYTES} bytes (1 MiB)")
    loader = _Loader(data, source)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise ConfigError(f"{source}: its values are nested too deeply to read; a config nests a few levels") from None
    finally:
        loader.dispose()
