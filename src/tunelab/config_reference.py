"""The config reference (docs/config-reference.md), generated from the pydantic models of
:mod:`tunelab.config`: every key with its type, default, bounds and description, so the page never
drifts from what the code accepts.

    python -m tunelab.config_reference > docs/config-reference.md
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tunelab.config import Config, DataConfig, modalities

HEADER = """# Config reference

Generated from the field descriptions in `src/tunelab/config.py` and each modality's `config.py` by
`python -m tunelab.config_reference > docs/config-reference.md` (a test checks that this page is
current). How the keys fit together, recipes and `--set`: [config.md](config.md).

A key is written as in `--set`: `stages.N.lr` is the `lr` of stage N (from 0).
"""


def _type_name(tp: Any) -> str:
    """A type as a user writes the value: ``int``, ``"a" | "b"``, ``list of ...``, ``... | null``."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping" if not args else f"mapping of {_type_name(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"section `{tp.__name__}`"
    return getattr(tp, "__name__", str(tp))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(field.json_schema_extra, dict) and "shown_default" in field.json_schema_extra:
            return str(field.json_schema_extra["shown_default"])  # a default the config computes
        if isinstance(value, BaseModel):
            return "(section defaults)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return "(the recipe's)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    return f"`{json.dumps(value)}`"


def _bounds(field: FieldInfo) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >="}
    out = []
    for meta in field.metadata:
        for attr, sign in signs.items():
            v = getattr(meta, attr, None)
            if v is not None:
                out.append(f"{sign} {v}")
    return ", ".join(out)


def _sections(model: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel]]]:
    """``model`` and every section under it, depth first, with its key prefix; the data section is
    followed by each modality's own (its keys beside the shared ones, and its subsections)."""
    out: list[tuple[str, type[BaseModel]]] = [(prefix, model)]
    if model is DataConfig:
        for m in modalities().values():
            out += [(prefix, m.data)] + [s for s in _sections(m.data, prefix)[1:] if s not in out]
        return out
    for name, field in model.model_fields.items():
        for sub in _models_in(field.annotation):
            key = f"{prefix}{name}" + (".N" if get_origin(_strip_none(field.annotation)) is list else "")
            if key.endswith(".N") or get_origin(_strip_none(field.annotation)) is not dict:
                out += _sections(sub, key + ".")
            else:
                out += _sections(sub, key + ".KEY.")
    return out


def _strip_none(tp: Any) -> Any:
    args = [a for a in get_args(tp) if a is not type(None)]
    return args[0] if get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in get_args(tp) for m in _models_in(a)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(key: str) -> str:
    return "".join(c for c in key if c.isalnum() or c in "-_").lower()


def _table(prefix: str, model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or "").split()) if model is not Config else ""
    own = [m for m in modalities().values() if m.data is model]
    title = f"`{prefix.rstrip('.')}`" + (f" of {own[0].name} (model.family: {own[0].family})" if own else "")
    lines = (
        [f"## {title}" if prefix else "## Top level", ""]
        + ([doc, ""] if doc else [])
        + ["| key | type | default | description |", "|---|---|---|---|"]
    )
    for name, field in model.model_fields.items():
        if own and name in DataConfig.model_fields:
            continue  # the shared keys are in the data table
        desc = field.description or ""
        if not desc and _models_in(field.annotation):
            key = f"{prefix}{name}" + (".N" if get_origin(_strip_none(field.annotation)) is list else "")
            desc = f"see [`{key}`](#{_anchor(key)})"
        bounds = _bounds(field)
        if bounds:
            desc = f"{desc} ({bounds})" if desc else f"({bounds})"
        lines.append(f"| `{prefix}{name}` | {_type_name(field.annotation)} | {_cell(_default(field))} | {_cell(desc)} |")
    return "\n".join(lines) + "\n"


def reference() -> str:
    """The whole reference page as Markdown."""
    return HEADER + "\n" + "\n".join(_table(p, m) for p, m in _sections(Config, ""))


if __name__ == "__main__":
    print(reference(), end="")
