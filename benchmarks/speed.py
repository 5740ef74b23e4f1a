"""Speed benchmark: tunelab against the plain PyTorch fine-tuning loop of the tutorials.

Baseline: a torchvision-style Dataset that converts and resizes every image every epoch, all
frozen parameters set ``requires_grad=False``, the model in train mode, fp32, NCHW, the backbone
run on every batch. tunelab: the same backbone, data, recipe, epochs and seed through
``tunelab.fit`` (decode once, freeze-boundary cache shared by both stages, bf16 extraction where
the CPU has it, channels_last, BN/dropout policy, fused AdamW, checkpoints every epoch). Whole
recipe: the baseline's training loop; tunelab's stages (tables, audits, cache extraction, epochs,
checkpoints) and its probe. tunelab.fit end to end adds what the baseline's column leaves out on
either side (loading and decoding the images, the evaluation, the baselines, the report).

Fashion-MNIST, EfficientNet-Lite0 (offline weights), 64 px, the default recipe as
``tunelab.vision.config.image_stages("default")`` defines it (LP-FT: the head 4 epochs at lr 3e-3, then all layers
20 epochs at lr 3e-4, cosine, 1 warm-up epoch), the same stages, learning rates and schedule in both
loops. tunelab's whole recipe includes its probe on the pretrained features, which chooses the
all-layers rate and the flips (here 3e-4 and flips, as in the baseline). Each measurement runs in its
own process (peak RSS is per process); the two contenders alternate.

    .venv/bin/python benchmarks/speed.py                       # 1k full recipe; 10k and 60k 2+2 epochs
    .venv/bin/python benchmarks/speed.py --sizes 1000 --repeats 2
    .venv/bin/python benchmarks/speed.py --sizes 10000 --whole  # the whole recipe at 10k (about 25 min)

For 10k and 60k images each phase runs 2 epochs (epoch 1 and epoch 2 measured) unless ``--whole``;
the whole-recipe time there is epoch1 + (E - 1) * epoch2 per phase, marked as estimated. At 60k images the
baseline's epochs are timed on their first 60 batches and scaled to the whole epoch (its test
accuracy there is after those partial epochs, so it is not comparable). Results go to
benchmarks/results/speed.jsonl and the table to benchmarks/results/speed.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _default_recipe() -> list[dict]:
    """The default recipe's stages: what trains, epochs, lr, warm-up epochs."""
    from tunelab.vision.config import image_stages

    return [{"train": st.train, "epochs": st.epochs, "lr": st.lr, "warmup": st.warmup_epochs} for st in image_stages("default")]


STAGES = _default_recipe()
EPOCHS = tuple(st["epochs"] for st in STAGES)
RECIPE = "default-lpft20-probe"  # rows of earlier recipes stay in the jsonl; the table shows this one


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the baseline: the tutorials' loop -----------------------------------------------------------


BASELINE_SAMPLE_BATCHES = 60  # at 60k images the baseline epoch is timed on this many batches and scaled


def baseline(size: int, epochs: tuple[int, int], seed: int) -> dict:
    import timm
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from tunelab.vision.backbones import PACKAGED
    from tunelab.vision.data._sources import fashion_mnist

    torch.manual_seed(seed)
    train_src, test_src = fashion_mnist("train"), fashion_mnist("test")
    idx = _train_indices(size, seed)
    tf_train = transforms.Compose(
        [
            transforms.Resize(64),
            transforms.Grayscale(3),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    tf_test = transforms.Compose(
        [transforms.Resize(64), transforms.Grayscale(3), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    )

    class Images(Dataset):
        def __init__(self, arrays, labels, tf):
            self.arrays, self.labels, self.tf = arrays, labels, tf

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):  # decoded and transformed again every epoch
            return self.tf(Image.fromarray(self.arrays[i])), int(self.labels[i])

    train = Images(train_src.images[idx], train_src.labels[idx], tf_train)
    test = Images(test_src.images, test_src.labels, tf_test)
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(PACKAGED["tf_efficientnet_lite0"].load(model))
    model.reset_classifier(10)
    from transformers import get_cosine_schedule_with_warmup

    phases = [
        (f"stage{i + 1}", [model.classifier] if st["train"] == ["head"] else [model], st["lr"], n, st["warmup"])
        for i, (st, n) in enumerate(zip(STAGES, epochs))
    ]
    out: dict = {"phases": {}}
    t_all = time.perf_counter()
    for name, trainable, lr, n_epochs, warmup in phases:
        for p in model.parameters():
            p.requires_grad = False
        for m in trainable:
            for p in m.parameters():
                p.requires_grad = True
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=0)
        # cosine over the epochs run, with the recipe's warm-up: what tunelab's stage does
        sched = get_cosine_schedule_with_warmup(opt, int(warmup * len(loader)), n_epochs * len(loader))
        times = []
        limit = BASELINE_SAMPLE_BATCHES if size >= 60000 else None
        for _ in range(n_epochs):
            model.train()
            t0 = time.perf_counter()
            for b, (x, y) in enumerate(loader):
                if limit is not None and b == limit:
                    break
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            elapsed = time.perf_counter() - t0
            times.append(elapsed * len(loader) / limit if limit is not None else elapsed)
        out["phases"][name] = times
    out["train_seconds"] = time.perf_counter() - t_all
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=256):
            correct += int((model(x).argmax(1) == y).sum())
    out["test_accuracy"] = correct / len(test)
    out["cache_mb"] = 0.0
    out["decoded_mb"] = 0.0
    return out


def _train_indices(size: int, seed: int):
    """The same training images tunelab's data.samples_per_class picks (stratified, seeded)."""
    from tunelab.vision.config import ImageDataConfig
    from tunelab.vision.data import load_data

    cfg = ImageDataConfig(train="fashion-mnist", samples_per_class=size // 10, val_split=0.0, seed=seed, image_size=8, test=None)
    splits = load_data(cfg)
    return [int(s.split("[")[1].rstrip("]")) for s in splits.train.items]


# --- tunelab -------------------------------------------------------------------------------------


def tunelab_run(size: int, epochs: tuple[int, int], seed: int) -> dict:
    import tunelab

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = tunelab.fit(
            HERE.parent / "examples" / "default.yaml",
            overrides=[
                f"run.dir={tmp}",
                "run.name=speed",
                "run.progress=false",
                f"run.seed={seed}",
                f"data.seed={seed}",
                f"data.samples_per_class={size // 10}",
                "data.val_split=0",
                "data.test=auto",
                f"stages.0.epochs={epochs[0]}",
                f"stages.1.epochs={epochs[1]}",
            ],
        )
        total = time.perf_counter() - t0
        cache_mb = _cache_mb(run)
        # the stages' wall-clock: tables, audits, cache extraction, epochs and checkpoints
        stage_seconds = sum(v["seconds"] for v in json.loads((run.dir / "stages.json").read_text()).values())
        probe_seconds = _probe_seconds((run.dir / "log.txt").read_text())
    phases: dict[str, list[float]] = {"stage1": [], "stage2": []}
    for row in run.history:
        phases[f"stage{row['stage'] + 1}"].append(row["seconds"] + row.get("cache_seconds", 0.0))
    # the probe on the pretrained features decides the recipe's rate and flips: part of the recipe
    return {
        "phases": phases,
        "train_seconds": stage_seconds + probe_seconds,
        "probe_seconds": probe_seconds,
        "fit_seconds": total,
        "test_accuracy": run.metrics["test"]["accuracy"],
        "cache_mb": cache_mb,
        "decoded_mb": (size + 10000) * 3 * 64 * 64 / 2**20,
    }  # train + test images held as uint8


def _cache_mb(run) -> float:
    """The most feature cache held at once: per stage, its own cache plus what the same pass cached
    for the next stage, from the lines tunelab logs ('..., 2.0 MB (computed ...), +1.2 MB')."""
    import re

    lines = [x for x in (run.dir / "log.txt").read_text().splitlines() if " cache: " in x]
    return max([sum(float(m) for m in re.findall(r"([0-9.]+) MB", x)) for x in lines] or [0.0])


def tunelab_blocks_vs_full(size: int, seed: int) -> dict:
    """Per-epoch cost of a stage training the last 2 blocks (cached prefix) against a full fine-tune."""
    import tunelab

    with tempfile.TemporaryDirectory() as tmp:
        run = tunelab.fit(
            HERE.parent / "examples" / "default.yaml",
            overrides=[
                f"run.dir={tmp}",
                "run.name=blocks",
                "run.progress=false",
                f"run.seed={seed}",
                f"data.seed={seed}",
                f"data.samples_per_class={size // 10}",
                "data.val_split=0",
                "data.test=null",
                "stages=[{train: [head, {last_blocks: 2}], epochs: 3, lr: 3.0e-4}, {train: all, epochs: 3, lr: 3.0e-4}]",
            ],
        )
    per = {s: [r["seconds"] for r in run.history if r["stage"] == s] for s in (0, 1)}
    return {
        "last2_epoch_s": statistics.mean(per[0][1:]),
        "full_epoch_s": statistics.mean(per[1][1:]),
        "last2_first_epoch_s": run.history[0]["seconds"] + run.history[0].get("cache_seconds", 0.0),
    }


def _probe_seconds(log: str) -> float:
    """Seconds between the log's backbone line and its "pretrained features" line: the probe."""
    from datetime import datetime

    stamps = {}
    for line in log.splitlines():
        for key in ("INFO backbone ", "INFO pretrained features"):
            if key in line and key not in stamps:
                stamps[key] = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    if len(stamps) < 2:
        return 0.0
    return (stamps["INFO pretrained features"] - stamps["INFO backbone "]).total_seconds()


# --- driver --------------------------------------------------------------------------------------


def one(kind: str, size: int, epochs: tuple[int, int], seed: int) -> None:
    if kind == "blocks":
        r = tunelab_blocks_vs_full(size, seed)
    else:
        r = (baseline if kind == "baseline" else tunelab_run)(size, epochs, seed)
    r.update({"kind": kind, "size": size, "epochs": list(epochs), "seed": seed, "peak_rss_mb": _peak_rss_mb(), "recipe": RECIPE})
    print("RESULT " + json.dumps(r), flush=True)


def summarise(rows: list[dict]) -> str:
    lines = [
        "| images | contender | head epoch 1 s | head epoch 2+ s (img/s) | all-layers epoch 1 s | "
        "epoch 2+ s (img/s) | whole recipe s | tunelab.fit end to end s | peak RSS MB | feature cache MB | "
        "decoded images MB | test acc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    blocks = [r for r in rows if r["kind"] == "blocks"]
    rows = [r for r in rows if r["kind"] != "blocks" and r.get("recipe") == RECIPE]  # this recipe only
    for size in sorted({r["size"] for r in rows}):
        by = {}
        for kind in ("baseline", "tunelab"):
            rs = [r for r in rows if r["size"] == size and r["kind"] == kind]
            if not rs:
                continue
            rs = [r for r in rs if list(r["epochs"]) == list(EPOCHS)] or rs  # whole-recipe runs where there are some
            med = lambda f, rs=rs: statistics.median(f(r) for r in rs)  # noqa: E731
            h1 = med(lambda r: r["phases"]["stage1"][0])
            h2 = med(lambda r: statistics.mean(r["phases"]["stage1"][1:]))
            b1 = med(lambda r: r["phases"]["stage2"][0])
            b2 = med(lambda r: statistics.mean(r["phases"]["stage2"][1:]))
            full = list(rs[0]["epochs"]) == list(EPOCHS)
            whole = (
                med(lambda r: r["train_seconds"])
                if full
                else h1 + (EPOCHS[0] - 1) * h2 + b1 + (EPOCHS[1] - 1) * b2 + med(lambda r: r.get("probe_seconds", 0.0))
            )
            by[kind] = dict(
                h1=h1,
                h2=h2,
                b1=b1,
                b2=b2,
                whole=whole,
                full=full,
                acc=med(lambda r: r["test_accuracy"]),
                rss=med(lambda r: r["peak_rss_mb"]),
                cache=med(lambda r: r["cache_mb"]),
                decoded=med(lambda r: r.get("decoded_mb", 0.0)),
                n=len(rs),
                fit=f"{med(lambda r: r['fit_seconds']):.0f}" if full and "fit_seconds" in rs[0] else "-",
            )
            v = by[kind]
            lines.append(
                f"| {size:,} | {kind} ({v['n']} run{'s' if v['n'] > 1 else ''}) | {h1:.2f} | "
                f"{h2:.3f} ({size / h2:,.0f}) | {b1:.2f} | {b2:.2f} ({size / b2:,.0f}) | "
                f"{whole:.0f}{'' if full else ' (est.)'} | {v['fit']} | {v['rss']:.0f} | "
                f"{v['cache']:.1f} | {v['decoded']:.0f} | {v['acc']:.4f} |"
            )
        if len(by) == 2:
            b, t = by["baseline"], by["tunelab"]
            ratios.append(
                f"| {size:,} | {b['h2'] / t['h2']:.0f}x | {b['whole'] / t['whole']:.1f}x | "
                f"{b['b2'] / t['b2']:.1f}x | {t['acc'] - b['acc']:+.4f} |"
            )
    if ratios:
        lines += [
            "",
            "| images | head epochs 2+ speed-up | whole recipe speed-up | all-layers epoch speed-up | "
            "accuracy tunelab - baseline |",
            "|---|---|---|---|---|",
        ] + ratios
    if blocks:
        lines += [
            "",
            "tunelab, a stage training the last 2 blocks (cached prefix) against a full fine-tune stage, "
            "seconds per epoch (epochs 2+):",
            "",
            "| images | last 2 blocks | full fine-tune | ratio |",
            "|---|---|---|---|",
        ]
        for r in blocks:
            lines.append(
                f"| {r['size']:,} | {r['last2_epoch_s']:.2f} | {r['full_epoch_s']:.2f} | "
                f"{r['full_epoch_s'] / r['last2_epoch_s']:.1f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 60000])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--whole", action="store_true", help="the whole recipe at every size (default: only up to 1k)")
    ap.add_argument("--one", choices=["baseline", "tunelab", "blocks"], help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.jsonl")
    a = ap.parse_args()
    if a.one:
        one(a.one, a.sizes[0], tuple(a.epochs), a.seed)
        return
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in a.out.read_text().splitlines()] if a.out.is_file() else []
    for size in a.sizes:
        epochs = EPOCHS if size <= 1000 or a.whole else (2, 2)
        jobs = [("blocks", (0, 0))] if size <= 1000 else []
        for rep in range(a.repeats):  # the two contenders alternate
            jobs += [(k, epochs) for k in (("baseline", "tunelab") if rep % 2 == 0 else ("tunelab", "baseline"))]
        for kind, ep in jobs:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                kind,
                "--sizes",
                str(size),
                "--epochs",
                *map(str, ep),
                "--seed",
                str(a.seed),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{kind} {size} failed:\n{out.stderr[-3000:]}")
            r = json.loads(line[7:])
            rows.append(r)
            with open(a.out, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{kind:>8} {size:>6} images: " + json.dumps({k: v for k, v in r.items() if k != "phases"}), flush=True)
    md = summarise(rows)
    a.out.with_suffix(".md").write_text(__doc__.split("\n\n")[1] + "\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
