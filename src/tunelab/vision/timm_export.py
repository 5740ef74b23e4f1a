"""The ``timm`` format: a folder that plain timm loads without tunelab, written by timm's own
``save_for_hf`` (``model.safetensors`` + ``config.json`` with the pretrained config: the input size,
the normalisation, the class names)::

    model = timm.create_model("local-dir:FOLDER", pretrained=True)
    # or, naming the architecture (num_classes in the overlay too: timm drops a classifier whose
    # size differs from the pretrained config's)
    model = timm.create_model(NAME, pretrained=True, num_classes=K,
                              pretrained_cfg_overlay={"file": "FOLDER/model.safetensors", "num_classes": K})

The run's model becomes a timm model with its own classifier: the backbone's weights plus the
head's linear layer, with what the objective applies after it folded in (a regression's rescaling
to the target's units). That needs a head timm has: pooling then one linear layer (no hidden
layers). ``decoding.json`` says how to read the outputs (the problem type, the names, the
thresholds of a multi-label run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.checkpoint import atomic_write_text
from tunelab.errors import ModelError
from tunelab.runs import Run
from tunelab.vision.config import image_data

PREFIX = "backbone.model."  # where a run's state dict keeps the timm model's own weights


def timm_model(run: Run) -> Any:
    """A plain timm model with the run's weights and its head as timm's classifier."""
    import timm

    cfg = run.config.model
    if cfg.head.hidden:
        raise ModelError(
            f"--format timm: the run's head has hidden layers ({len(cfg.head.hidden)}); a timm model ends "
            "in one linear layer. Export it as onnx or torchscript instead"
        )
    state = run.model.state_dict()
    tensors = {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
    pooled = isinstance(run.model.head.pool, torch.nn.Identity)  # token models pool inside the timm model
    kwargs: dict[str, Any] = {} if pooled else {"global_pool": cfg.head.pooling}
    model = timm.create_model(cfg.backbone, pretrained=False, num_classes=len(run.classes), **kwargs)
    own = model.state_dict()
    classifier = sorted(k for k in own if k not in tensors)
    if [k.rsplit(".", 1)[1] for k in classifier] != ["bias", "weight"]:
        raise ModelError(
            f"--format timm: {cfg.backbone}'s weights beyond the run's are {classifier}, not one linear "
            "classifier; export it as onnx or torchscript instead"
        )
    weight, bias = run.objective.fold(state["head.fc.weight"], state["head.fc.bias"])
    tensors[classifier[0]], tensors[classifier[1]] = bias, weight
    model.load_state_dict(tensors, strict=True)
    return model.eval()


@torch.inference_mode()
def timm_difference(model: Any, run: Run, images: torch.Tensor) -> float:
    """The largest |tunelab - timm| output on ``images``, timm fed as its pretrained config says."""
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, -1, 1, 1)
    ours = run.model(images)
    theirs = model((images.float() / 255 - mean) / std)
    return float(np.abs((ours - theirs).numpy()).max())


def write_timm(run: Run, folder: Path, card: str, images: torch.Tensor) -> float:
    """Write the timm folder (weights, config, decoding.json, README.md); returns the largest
    |tunelab - timm| output."""
    from timm.models import save_for_hf

    model = timm_model(run)
    diff = timm_difference(model, run, images)
    size = image_data(run.config).image_size
    # tunelab resizes the shorter side to the size and crops the centre square: a crop_pct of 1
    save_for_hf(
        model,
        str(folder),
        model_config={"label_names": list(run.classes)},
        safe_serialization=True,
        data_config={"input_size": (3, size, size), "crop_pct": 1.0, "interpolation": "bicubic"},
    )
    atomic_write_text(folder / "decoding.json", json.dumps(run.decoding(run.objective.outputs), indent=1))
    atomic_write_text(folder / "README.md", card)
    return diff


def timm_usage(run: Run, folder: str) -> str:
    k, name = len(run.classes), run.config.model.backbone
    return f"""Plain timm loads this folder, without tunelab:

```python
import timm

model = timm.create_model("local-dir:{folder}", pretrained=True).eval()
# or, naming the architecture (num_classes in the overlay as well: timm drops a classifier whose size
# differs from the pretrained config's)
model = timm.create_model("{name}", pretrained=True, num_classes={k},
                          pretrained_cfg_overlay={{"file": "{folder}/model.safetensors", "num_classes": {k}}}).eval()
config = timm.data.resolve_data_config({{}}, model=model)   # input size {image_data(run.config).image_size}, mean, std
transform = timm.data.create_transform(**config)
```

`model.pretrained_cfg["label_names"]` holds the names of the outputs ({run.objective.outputs});
`decoding.json` the problem type ({run.objective.name}) and how to read them: {run.reading(run.objective.outputs)}."""


class TimmFolder:
    """``--format timm`` (:class:`tunelab.engine.task.LibraryExport`)."""

    checked_by = "timm"

    def usage(self, run: Run, folder: str) -> str:
        return timm_usage(run, folder)

    def write(self, run: Run, folder: Path, card: str, examples: Any, n: int) -> float:
        return write_timm(run, folder, card, examples.inputs[:n].contiguous())
