"""How long a hub-only backbone takes to fail without network: ``create_backbone("resnet18",
pretrained=True)`` (no packaged weights, nothing in the hub cache), from the import to the error.

    PYTHONPATH=src .venv/bin/python benchmarks/offline_failure.py

Run it with PYTHONPATH pointing at another checkout's src/ to compare commits; the results are in
benchmarks/results/offline_failure.md.
"""

from __future__ import annotations

import time

t0 = time.perf_counter()
from tunelab.errors import ModelError  # noqa: E402
from tunelab.vision.backbones import create_backbone  # noqa: E402

t1 = time.perf_counter()
try:
    create_backbone("resnet18", pretrained=True, weights="auto")
    print("loaded: this machine has the weights or a network; nothing to measure")
except ModelError as e:
    print("message:", str(e))
print(f"import {t1 - t0:.1f} s, failure {time.perf_counter() - t1:.1f} s")
