"""tunelab: fine-tune pretrained networks on your own small data set, right and fast.

    import tunelab
    run = tunelab.fit("examples/default.yaml", overrides=["data.samples_per_class=20"])
    print(run.metrics["test"]["accuracy"], run.dir)
    tunelab.export(run.dir, "onnx").max_abs_diff    # runs/demo/export/model.onnx, checked in onnxruntime
    result = tunelab.tune("examples/tune_fashion_mnist.yaml", trials=20)   # runs/demo-tune/best.yaml

The names below are imported on first use (as timm and accelerate do): ``import tunelab``, its
config and its command line's ``--help`` load no torch, Optuna or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tunelab.errors import ConfigError, DataError, ModelError, TunelabError

if TYPE_CHECKING:
    from tunelab.api import evaluate, load_run, predict, summary
    from tunelab.config import Config, load_config
    from tunelab.diagnosis import diagnose
    from tunelab.exports import export
    from tunelab.features import Features, extract
    from tunelab.pipeline import fit
    from tunelab.report import compare, write_report
    from tunelab.runs import Run
    from tunelab.search import TuneResult, tune

_LAZY = {
    "evaluate": "tunelab.api",
    "predict": "tunelab.api",
    "summary": "tunelab.api",
    "Config": "tunelab.config",
    "load_config": "tunelab.config",
    "diagnose": "tunelab.diagnosis",
    "export": "tunelab.exports",
    "extract": "tunelab.features",
    "Features": "tunelab.features",
    "compare": "tunelab.report",
    "write_report": "tunelab.report",
    "Run": "tunelab.runs",
    "load_run": "tunelab.api",
    "TuneResult": "tunelab.search",
    "tune": "tunelab.search",
    "fit": "tunelab.pipeline",
}

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "Features",
    "ModelError",
    "Run",
    "TuneResult",
    "TunelabError",
    "compare",
    "diagnose",
    "evaluate",
    "export",
    "extract",
    "fit",
    "load_config",
    "load_run",
    "predict",
    "summary",
    "tune",
    "write_report",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
