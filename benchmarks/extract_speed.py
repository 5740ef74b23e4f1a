"""Feature extraction against the model's plain inference: same model, same images, one thread.

EfficientNet-Lite0 (packaged ImageNet weights) at 64 px, N Fashion-MNIST test images written as
PNG files into class folders (the case ``tunelab extract FOLDER`` is for). Contenders:

- ``extract``: ``tunelab.extract(config, folder)``, the whole call: decoding the files, building
  the batches, the pooled features in bf16 where the CPU gains by it;
- ``extract (model part)``: the same call's forward passes only (``info["model_seconds"]``);
- ``plain inference``: the model's logits on the already decoded uint8 tensor, batch by batch, with
  the same precision (``tunelab.engine.device.predict_logits``), i.e. what a user's own loop costs
  at best, with no decoding.

They alternate, ``--rounds`` times each; the table gives the median images/s and the ratio of
plain inference's throughput to each (target: extraction within 1.3x of plain inference).

    .venv/bin/python benchmarks/extract_speed.py            # 1000 images, 7 rounds, about a minute
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

import tunelab
from tunelab.engine.device import place, predict_logits
from tunelab.engine.store import bf16_supported
from tunelab.vision.data import decode_file
from tunelab.vision.model import build_image_model

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _write_images(folder: Path, n: int) -> list[Path]:
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    files = []
    for i, (im, y) in enumerate(zip(images, labels)):
        (folder / str(y)).mkdir(parents=True, exist_ok=True)
        files.append(folder / str(y) / f"{i:05d}.png")
        Image.fromarray(im).save(files[-1])
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="tunelab-extract-speed-"))
    files = _write_images(tmp / "images", args.images)
    cfg = yaml.safe_load((ROOT / "examples" / "default.yaml").read_text())
    cfg["data"]["eval_batch_size"] = args.batch_size
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    tcfg = tunelab.load_config(tmp / "c.yaml")
    model = place(build_image_model(tcfg.model, 2), "cpu")
    dev = torch.device("cpu")
    bf16 = bf16_supported(dev)
    times: dict[str, list[float]] = {"extract": [], "extract (model part)": [], "plain inference": []}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        feats = tunelab.extract(tmp / "c.yaml", tmp / "images")
        times["extract"].append(time.perf_counter() - t0)
        times["extract (model part)"].append(feats.info["model_seconds"])
        images = torch.stack([decode_file(f, tcfg.data.image_size) for f in sorted(files)])
        t0 = time.perf_counter()
        predict_logits(model, images, args.batch_size, dev, bf16=bf16)
        times["plain inference"].append(time.perf_counter() - t0)
    load = os.getloadavg()[0]
    rate = {k: args.images / statistics.median(v) for k, v in times.items()}
    lines = [
        f"`benchmarks/extract_speed.py --images {args.images} --rounds {args.rounds} --batch-size "
        f"{args.batch_size}`: EfficientNet-Lite0 (packaged weights), {tcfg.data.image_size} px, "
        f"{args.images} Fashion-MNIST test images as PNG files, CPU, 1 thread, "
        f"{'bf16 autocast' if bf16 else 'fp32 (no bf16 on this CPU)'}; median of {args.rounds} alternating rounds; "
        f"load average {load:.1f} at the end (a shared machine: the rounds alternate so that load hits both).",
        "",
        "| contender | images/s | plain inference / contender |",
        "|---|---|---|",
    ]
    for k, r in rate.items():
        lines.append(f"| {k} | {r:.0f} | {rate['plain inference'] / r:.2f}x |")
    lines += [
        "",
        "The whole call also builds the model (loading its weights) and decodes the PNG files; plain "
        "inference starts from decoded tensors and a built model. The model part is the same forward code "
        "(pooled features instead of logits); its spread between rounds on this shared machine is wider "
        "than the difference between the two.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results" / "extract_speed.md").write_text("# Feature extraction against plain inference\n\n" + text)


if __name__ == "__main__":
    main()
