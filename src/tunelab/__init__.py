"""tunelab: fine-tune pretrained networks on your own small data set, right and fast.

    import tunelab
    run = tunelab.fit("examples/default.yaml", overrides=["data.samples_per_class=20"])
    print(run.metrics["test"]["accuracy"], run.dir)
    result = tunelab.tune("examples/tune_fashion_mnist.yaml", trials=20)   # runs/demo-tune/best.yaml
"""

from tunelab.config import Config, load_config
from tunelab.errors import ConfigError, DataError, ModelError, TunelabError
from tunelab.runs import Run, load_run
from tunelab.train import fit
from tunelab.api import evaluate, predict, summary
from tunelab.diagnosis import diagnose
from tunelab.report import compare, write_report
from tunelab.search import TuneResult, tune

__all__ = ["fit", "tune", "TuneResult", "evaluate", "predict", "summary", "diagnose", "write_report", "compare", "load_run", "load_config", "Config", "Run",
           "TunelabError", "ConfigError", "DataError", "ModelError"]
__version__ = "0.1.0"
