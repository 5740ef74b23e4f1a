"""Suite tasks for the problem types beyond single-label classification (issue 28): multi-label and
regression, one image and one text task each, every one with labels that people gave.

Registered into ``suite_data.TASKS`` when ``suite_data`` is imported and built the same way
(``python benchmarks/suite_data.py --only emoji-tags``). The layout is the suite's, except:

* multi-label: ``label`` holds the example's labels joined by ``|`` (``animal|face``); every
  example has at least one, and every label has positives in both train and test;
* regression: ``label`` holds a plain decimal number;
* images sit flat under ``images/<split>/`` (a label is not a folder name here);
* ``meta.json`` says ``"problem": "multi_label"`` or ``"regression"`` and gives label counts or the
  target's range instead of classes.

There is no pool and no sub-sampling by the benchmark: the train file is the training set, and the
test split is held out by groups where the source has groups.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import statistics
import subprocess
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from suite_data import TASKS, Ctx, Items, SourceMissing, Task, _emoji_pngs, _on_white, clean_ws, group_split, npm_tarball, words
from suite_data_users import ELPV, pypi_file

SEP = "|"  # joins the labels of one multi-label example
FRAC_TEST = 0.25


# ----------------------------------------------------------------------------- registry and writing


@dataclass(frozen=True)
class ProblemTask(Task):
    problem: str = "multi_label"  # or "regression"

    def meta(self) -> dict:
        return super().meta() | {"problem": self.problem}

    def write_split(self, dest: Path, split: str, items: Items) -> None:
        with open(dest / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            if self.modality == "text":
                w.writerow(["text", "label"])
                w.writerows(items)
                return
            w.writerow(["path", "label"])
            (dest / "images" / split).mkdir(parents=True, exist_ok=True)
            for i, (arr, lab) in enumerate(items):
                rel = f"images/{split}/{i:05d}.png"
                Image.fromarray(arr).save(dest / rel, optimize=False)
                w.writerow([rel, lab])

    def summary(self, train: Items, test: Items) -> dict:
        info = self.meta() | {"train_size": len(train), "test_size": len(test)}
        if self.problem == "multi_label":
            info |= _label_stats(train, test)
        else:
            info |= {f"{name}_target": _target_stats(part) for name, part in (("train", train), ("test", test))}
        if self.modality == "text":
            med = statistics.median(words(x) for x, _ in train + test)
            info["median_words"] = med
            info["native"] = f"median {med:.0f} words (~{med * 1.3:.0f} tokens)"
        return info

    def table_cells(self, info: dict) -> tuple[str, str]:
        if self.problem == "multi_label":
            pos = list(info["train_positives"].values())
            return f"{info['num_labels']} labels", f"{min(pos)}-{max(pos)} pos."
        t = info["train_target"]
        return "regression", f"{t['min']:g} .. {t['max']:g}"


def problem_task(**kw: object) -> Callable:
    def deco(fn: Callable[[Ctx], tuple[Items, Items]]) -> Callable:
        if kw["name"] in TASKS:
            raise ValueError(f"suite task {kw['name']} is registered twice")
        TASKS[str(kw["name"])] = ProblemTask(build=fn, **kw)
        return fn

    return deco


def _label_stats(train: Items, test: Items) -> dict:
    pos_tr = Counter(lab for _, labs in train for lab in labs.split(SEP))
    pos_te = Counter(lab for _, labs in test for lab in labs.split(SEP))
    return {
        "labels": sorted(pos_tr),
        "num_labels": len(pos_tr),
        "labels_per_example": round(sum(pos_tr.values()) / len(train), 3),
        "train_positives": dict(sorted(pos_tr.items())),
        "test_positives": dict(sorted(pos_te.items())),
    }


def _target_stats(items: Items) -> dict:
    y = np.array([float(lab) for _, lab in items])
    return {
        "min": float(y.min()),
        "max": float(y.max()),
        "mean": round(float(y.mean()), 4),
        "std": round(float(y.std()), 4),
        "distinct": len(set(y.tolist())),
    }


# ----------------------------------------------------------------------------- shared helpers


def split_by_group(items: Items, groups: Sequence[str], ctx: Ctx, salt: int) -> tuple[Items, Items]:
    """Items whose group is drawn for test go to test: no group is on both sides."""
    test_groups = group_split(groups, FRAC_TEST, ctx.rng(salt))
    train = [it for g, it in zip(groups, items) if g not in test_groups]
    test = [it for g, it in zip(groups, items) if g in test_groups]
    return train, test


def prune_labels(train: Items, test: Items, min_train: int, min_test: int, max_labels: int) -> tuple[Items, Items]:
    """Keep the ``max_labels`` most frequent labels that have at least ``min_train`` positives in
    train and ``min_test`` in test; drop the other labels, then the examples left with none
    (repeated until nothing changes, as dropping examples lowers counts)."""
    while True:
        tr = Counter(lab for _, labs in train for lab in labs)
        te = Counter(lab for _, labs in test for lab in labs)
        ok = [lab for lab, k in tr.most_common() if k >= min_train and te[lab] >= min_test][:max_labels]
        keep = set(ok)
        new_tr = [(x, [lab for lab in labs if lab in keep]) for x, labs in train]
        new_te = [(x, [lab for lab in labs if lab in keep]) for x, labs in test]
        new_tr = [it for it in new_tr if it[1]]
        new_te = [it for it in new_te if it[1]]
        if keep == set(tr) | set(te) and len(new_tr) == len(train) and len(new_te) == len(test):
            break
        train, test = new_tr, new_te
    return [(x, SEP.join(sorted(labs))) for x, labs in train], [(x, SEP.join(sorted(labs))) for x, labs in test]


# ----------------------------------------------------------------------------- multi-label images

EMOJIBASE = "emojibase-data@17.0.0"
EMOJI_VERSION = "16.0.0"  # emoji-datasource, as the emoji-category task
EMOJI_VENDORS = ("google", "twitter")  # Noto (Apache-2.0) and Twemoji (CC BY 4.0): both redistributable
# CLDR keywords that name no drawn thing (slang, function words, colours of a word's meaning)
EMOJI_STOP_TAGS = {
    "143", "ily", "bae", "omg", "whatever", "no", "not", "up", "right", "left", "tale", "white", "facing",
    "open", "dating", "romance", "fairy", "fairytale", "ornithology", "emotion", "sweet", "adult",
}  # fmt: skip


def _emojibase_tags(ctx: Ctx) -> dict[str, list[str]]:
    """Emoji (code points without FE0F) -> its CLDR keywords, from emojibase-data's en/data.json."""
    with tarfile.open(npm_tarball(EMOJIBASE, ctx), "r:gz") as tf:
        data = json.load(tf.extractfile("package/en/data.json"))
    return {_norm_hex(e["hexcode"]): sorted(set(e.get("tags", []))) for e in data}


def _norm_hex(code: str) -> str:
    return "-".join(c for c in code.upper().split("-") if c != "FE0F")


@problem_task(
    name="emoji-tags",
    problem="multi_label",
    modality="image",
    what="emoji art -> its CLDR keywords (face, animal, hand, food, heart, ...), multi-label, colour",
    source=f"npm {EMOJIBASE} (en/data.json tags) + emoji-datasource-google/-twitter {EMOJI_VERSION} (64 px PNGs)",
    licence="emojibase-data MIT (keywords from Unicode CLDR, Unicode licence); art: Google Noto (Apache-2.0), "
    "Twitter Twemoji (CC BY 4.0)",
    split="by emoji, 75/25: each emoji is drawn by both vendors and both drawings sit on the same side; "
    "drawings whose pixels equal another's are left out",
    caveats="keywords kept: >= 15 positives in train and 3 in test, slang and function words left out "
    "(see EMOJI_STOP_TAGS); flags and skin-tone components left out; labels are keywords, so a drawing "
    "can lack a keyword it shows (missing positives); the labels overlap the emoji-category classes",
    native="64x64 RGBA (composited on white)",
    image_size=64,
)
def build_emoji_tags(ctx: Ctx) -> tuple[Items, Items]:
    tags = _emojibase_tags(ctx)
    data = {v: _emoji_pngs(v, ctx) for v in EMOJI_VENDORS}
    meta = data[EMOJI_VENDORS[0]][0]
    drawings: list[tuple[np.ndarray, list[str]]] = []
    groups: list[str] = []
    for e in sorted(meta, key=lambda e: e["image"]):
        if e["category"] in ("Flags", "Component") or not all(e["image"] in data[v][1] for v in EMOJI_VENDORS):
            continue
        t = tags.get(_norm_hex(e["unified"])) or tags.get(_norm_hex(e.get("non_qualified") or ""))
        labs = [x for x in t or [] if x not in EMOJI_STOP_TAGS]
        for v in EMOJI_VENDORS:
            if labs:
                drawings.append((_on_white(data[v][1][e["image"]]), labs))
                groups.append(e["image"])
    # a vendor draws some emojis alike (the same art, other keywords): every copy goes, so no
    # drawing is on both sides or carries two label sets
    counts = Counter(arr.tobytes() for arr, _ in drawings)
    unique = [i for i, (arr, _) in enumerate(drawings) if counts[arr.tobytes()] == 1]
    tr, te = split_by_group([drawings[i] for i in unique], [groups[i] for i in unique], ctx, salt=281)
    return prune_labels(tr, te, min_train=15, min_test=3, max_labels=50)


# ----------------------------------------------------------------------------- multi-label texts

DEBTAGS_FACETS = ("use", "works-with", "field")  # what a program is for, handles, and its field
MAX_TEXTS = 5000


def _debian_index(ctx: Ctx) -> tuple[str, str]:
    """The Packages and Translation-en indexes of the machine's Debian release (main), fetched into a
    private lists folder with ``apt-get update`` (the system's lists hold no long descriptions)."""
    lists = ctx.downloads / "apt-lists-en"
    release = _os_codename()
    want = [f"_dists_{release}_main_binary-amd64_Packages", f"_dists_{release}_main_i18n_Translation-en"]

    def found() -> list[Path]:
        return [next((p for p in sorted(lists.glob("*")) if w in p.name), Path()) for w in want]

    if not all(p.name for p in found()):
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        print("  apt-get update (Translation-en, into a private lists folder)", flush=True)
        cmd = ["apt-get", "update", "-qq", "-o", "Acquire::Languages=en", "-o", f"Dir::State::Lists={lists}"]
        cmd += ["-o", f"Dir::Cache={lists / 'cache'}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not all(p.name for p in found()):
            raise SourceMissing(f"apt-get update for the Debian {release} indexes failed: {r.stderr.strip()[-300:]}")
    packages, translations = (_apt_cat(p) for p in found())
    return packages, translations


def _os_codename() -> str:
    text = Path("/etc/os-release").read_text()
    m = re.search(r"^VERSION_CODENAME=(\S+)", text, re.M)
    if m is None:
        raise SourceMissing("/etc/os-release names no VERSION_CODENAME: not a Debian machine")
    return m.group(1).strip('"')


def _apt_cat(path: Path) -> str:
    """An index as apt stores it (lz4, gz, xz or plain), decompressed by apt's own helper."""
    r = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)], capture_output=True)
    if r.returncode != 0:
        raise SourceMissing(f"apt-helper could not read {path}: {r.stderr.decode()[-200:]}")
    return r.stdout.decode("utf-8", "replace")


def _stanzas(text: str) -> list[dict[str, str]]:
    """Debian control stanzas: field -> value, continuation lines kept with their newlines."""
    out = []
    for block in text.split("\n\n"):
        d: dict[str, str] = {}
        key = ""
        for line in block.split("\n"):
            if line.startswith((" ", "\t")) and key:
                d[key] += "\n" + line
            elif ":" in line:
                key, _, val = line.partition(":")
                d[key] = val.strip()
        if d:
            out.append(d)
    return out


def _description(desc: str) -> str:
    """Synopsis and long description as one line of prose (the ' .' lines are paragraph breaks)."""
    first, _, rest = desc.partition("\n")
    body = " ".join(line.strip() for line in rest.split("\n") if line.strip() != ".")
    return clean_ws(f"{first.strip()}. {body}")


@problem_task(
    name="debian-debtags",
    problem="multi_label",
    modality="text",
    what="Debian program descriptions -> their debtags (use::, works-with::, field::), multi-label",
    source="Debian 12 (bookworm) main archive indexes: Packages (Tag) and Translation-en (descriptions), "
    "fetched with apt-get update into <root>/_downloads/apt-lists-en",
    licence="descriptions: each package's own free licence (Debian main); debtags: public domain (debtags db)",
    split="by source package, 75/25 (binary packages of one source, which share descriptions, stay together); "
    f"whole source packages drawn at random up to {MAX_TEXTS} texts",
    caveats="programs only (role::program); one text per distinct description; tags are curated by Debian "
    "people but incomplete (missing positives); the index is the archive's at build time, so a point "
    "release can shift a few packages; text is synopsis + long description, capped at 300 words",
    native="",
    image_size=None,
)
def build_debtags(ctx: Ctx) -> tuple[Items, Items]:
    packages, translations = _debian_index(ctx)
    desc = {(d["Package"], d.get("Description-md5", "")): d.get("Description-en", "") for d in _stanzas(translations)}
    items: list[tuple[str, list[str]]] = []
    groups: list[str] = []
    seen: set[str] = set()
    for d in sorted(_stanzas(packages), key=lambda d: d.get("Package", "")):
        tags = [t.strip() for t in d.get("Tag", "").replace("\n", " ").split(",")]
        text = desc.get((d.get("Package", ""), d.get("Description-md5", "")), "")
        labs = sorted({t for t in tags if t.split("::")[0] in DEBTAGS_FACETS and not t.endswith("::TODO")})
        if "role::program" not in tags or not labs or not text or d.get("Description-md5") in seen:
            continue
        seen.add(d["Description-md5"])
        items.append((" ".join(_description(text).split()[:300]), labs))
        groups.append(d.get("Source", d["Package"]).split(" ")[0])
    # whole source packages at random until MAX_TEXTS: keeps CPU runs short and the groups intact
    keep: set[str] = set()
    uniq = sorted(set(groups))
    sizes = Counter(groups)
    total = 0
    for i in ctx.rng(285).permutation(len(uniq)):
        if total + sizes[uniq[i]] <= MAX_TEXTS:
            keep.add(uniq[i])
            total += sizes[uniq[i]]
    items = [it for g, it in zip(groups, items) if g in keep]
    groups = [g for g in groups if g in keep]
    tr, te = split_by_group(items, groups, ctx, salt=282)
    return prune_labels(tr, te, min_train=15, min_test=5, max_labels=50)


# ----------------------------------------------------------------------------- regression images


@problem_task(
    name="elpv-defect-probability",
    problem="regression",
    modality="image",
    what="electroluminescence images of solar cells -> defect probability given by experts (0, 1/3, 2/3, 1)",
    source=f"PyPI {ELPV[0]} {ELPV[1]} (wheel bundles 2,624 PNGs + labels.csv)",
    licence="images CC BY-NC-SA 4.0, code Apache-2.0 (non-commercial: never commit the images)",
    split="stratified by target and cell type (mono/poly), 75/25",
    caveats="the same images as the elpv-solar-defects classification task (no other real image regression "
    "source was found in the registries); the target takes only 4 values and is skewed (58% are 0); "
    "no module ids, so cells of one module may sit on both sides; flips and 90-degree rotations are "
    "label-preserving",
    native="300x300 grey",
    image_size=64,
)
def build_elpv_regression(ctx: Ctx) -> tuple[Items, Items]:
    items: Items = []
    strata: list[str] = []
    with zipfile.ZipFile(pypi_file(*ELPV, ctx)) as zf:
        for row in zf.read("elpv_dataset/data/labels.csv").decode().split("\n"):
            if not row.strip():
                continue
            path, prob, kind = row.split()
            img = np.asarray(Image.open(io.BytesIO(zf.read(f"elpv_dataset/data/{path}"))).convert("L"))
            items.append((img, f"{float(prob):.6f}".rstrip("0").rstrip(".") or "0"))
            strata.append(f"{prob}|{kind}")
    rng = ctx.rng(283)
    test_idx: set[int] = set()
    for s in sorted(set(strata)):
        idx = [i for i, x in enumerate(strata) if x == s]
        test_idx |= {idx[j] for j in rng.permutation(len(idx))[: round(FRAC_TEST * len(idx))]}
    return [it for i, it in enumerate(items) if i not in test_idx], [items[i] for i in sorted(test_idx)]


# ----------------------------------------------------------------------------- regression texts

VADER = ("vaderSentiment", "3.3.2")


@problem_task(
    name="vader-tweets-valence",
    problem="regression",
    modality="text",
    what="tweets -> sentiment valence, the mean of 20 people's ratings on -4 .. +4",
    source=f"PyPI {VADER[0]} {VADER[1]} sdist (additional_resources/hutto_ICWSM_2014.tar.gz, tweets_GroundTruth.txt)",
    licence="MIT (package); tweets: Hutto & Gilbert, ICWSM 2014 research data",
    split="random 75/25 (the source has no author ids); texts listed twice are kept once",
    caveats="HTML entities decoded; the tweets were chosen to carry sentiment, so few are neutral; "
    "the ratings are means of 20 raters (noise of about 0.3 remains)",
    native="",
    image_size=None,
)
def build_vader_tweets(ctx: Ctx) -> tuple[Items, Items]:
    with tarfile.open(pypi_file(*VADER, ctx, sdist=True), "r:gz") as sdist:
        inner = sdist.extractfile(f"{VADER[0]}-{VADER[1]}/additional_resources/hutto_ICWSM_2014.tar.gz")
        with tarfile.open(fileobj=io.BytesIO(inner.read()), mode="r:gz") as tf:
            raw = tf.extractfile("hutto_ICWSM_2014/tweets_GroundTruth.txt").read()
    items: Items = []
    seen: set[str] = set()
    for line in raw.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        text = clean_ws(html.unescape("\t".join(parts[2:])))
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            items.append((text, f"{float(parts[1]):.4f}".rstrip("0").rstrip(".")))
    perm = ctx.rng(284).permutation(len(items))
    test_idx = set(perm[: round(FRAC_TEST * len(items))].tolist())
    return [it for i, it in enumerate(items) if i not in test_idx], [it for i, it in enumerate(items) if i in test_idx]
