"""ONNX export of a real run: parity with PyTorch on 100 test images, and onnxruntime's throughput
against PyTorch's on the CPU.

The run: EfficientNet-Lite0 (packaged ImageNet weights) on Fashion-MNIST at 64 px, 20 training
images per class, ``recipe: probe`` (the linear probe as the head; the backbone's weights are the
pretrained ones), then ``tunelab.export(run, "onnx")``, which compares onnxruntime's logits with
PyTorch's on 100 of the official test images. Throughput: the same 1000 test images (uint8, batch
64, one thread) through PyTorch fp32, PyTorch bf16 autocast (where the CPU has bf16) and
onnxruntime (fp32, CPU provider), alternating, median of ``--rounds``.

    .venv/bin/python benchmarks/export_speed.py        # about two minutes
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import tunelab
from tunelab.api import load_run
from tunelab.engine.device import predict_logits
from tunelab.engine.store import bf16_supported
from tunelab.tasks import task_for

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp(prefix="tunelab-export-speed-"))
    run = tunelab.fit(
        ROOT / "examples" / "default.yaml",
        overrides=[
            "recipe=probe",
            f"run.dir={tmp}",
            "run.name=lite0",
            "run.progress=false",
            "run.baselines=false",
            "run.threads=1",
            "data.samples_per_class=20",
            "data.val_samples_per_class=10",
            f"data.test_samples_per_class={args.images // 10}",
        ],
    )
    result = tunelab.export(run.dir, "onnx")
    model = load_run(run.dir).model
    images = task_for(run.config).load_eval_set("fashion-mnist", run.classes, run.config.data).inputs[: args.images]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(result.path), opts, providers=["CPUExecutionProvider"])
    cpu, bf16 = torch.device("cpu"), bf16_supported(torch.device("cpu"))
    contenders = {
        "PyTorch fp32": lambda: predict_logits(model, images, 64, cpu),
        "onnxruntime fp32": lambda: [
            session.run(None, {"images": images[i : i + 64].numpy()}) for i in range(0, len(images), 64)
        ],
    }
    if bf16:
        contenders["PyTorch bf16 autocast"] = lambda: predict_logits(model, images, 64, cpu, bf16=True)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, f in contenders.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    rate = {k: len(images) / statistics.median(v) for k, v in times.items()}
    ort_logits = np.concatenate([session.run(None, {"images": images[i : i + 64].numpy()})[0] for i in range(0, len(images), 64)])
    diff_all = float(np.abs(ort_logits - predict_logits(model, images, 64, cpu).numpy()).max())
    lines = [
        f"`benchmarks/export_speed.py --images {args.images} --rounds {args.rounds}`: EfficientNet-Lite0 "
        f"(packaged weights, linear-probe head, test accuracy {run.metrics['test']['accuracy']:.3f}), 64 px, "
        f"Fashion-MNIST test images, CPU, 1 thread, batch 64; load average {os.getloadavg()[0]:.1f}.",
        "",
        f"Parity: max |PyTorch - onnxruntime| logit = {result.max_abs_diff:.2e} on the {result.checked} test "
        f"images `tunelab export` checks, {diff_all:.2e} on all {len(images)}.",
        "",
        "| runtime | images/s | against PyTorch fp32 |",
        "|---|---|---|",
    ]
    for k, r in rate.items():
        lines.append(f"| {k} | {r:.0f} | {r / rate['PyTorch fp32']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results" / "export_speed.md").write_text("# ONNX export: parity and speed\n\n" + text)


if __name__ == "__main__":
    main()
