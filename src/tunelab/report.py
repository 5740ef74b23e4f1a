"""A self-contained HTML report of a run (images embedded, no network), and a side-by-side
comparison of several runs.

    tunelab report runs/demo          # writes runs/demo/report.html
    tunelab compare runs/a runs/b     # writes compare.html
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tunelab import plots
from tunelab.checkpoint import atomic_write_text
from tunelab.diagnosis import diagnose
from tunelab.errors import ConfigError
from tunelab.runs import read_history

WRONG_TEXTS = "wrong_texts.json"  # the most confidently wrong validation texts of a text run
SECTIONS = ["summary", "diagnosis", "curves", "metrics", "data", "model", "regularization", "config"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1150px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
pre{background:#f6f8fa;padding:.8rem;overflow-x:auto;font-size:12px;line-height:1.35}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:.6rem 0}
.verdict{font-size:1.3rem;font-weight:600} .warn{color:#a15c00} nav a{margin-right:.8rem}
.kv td{text-align:left}
"""


def _img(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _read(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")

    def load_json(name: str, default: Any) -> Any:
        p = run_dir / name
        return json.loads(p.read_text()) if p.is_file() else default

    history = read_history(run_dir)
    return {"config_text": (run_dir / "config.yaml").read_text(), "metrics": load_json("metrics.json", {}),
            "history": history, "classes": load_json("classes.json", []), "data": load_json("data.json", {}),
            "stages": load_json("stages.json", {})}


def make_plots(run_dir: Path, r: dict[str, Any],
               gallery: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> dict[str, Path | None]:
    """All figures into RUN_DIR/plots; the gallery needs (images, labels, probabilities) of the
    validation set, else an existing gallery is kept."""
    out = run_dir / "plots"
    figs: dict[str, Path | None] = {}
    if r["history"]:
        figs["curves"] = plots.curves(r["history"], out / "curves.png")
        figs["lr"] = plots.learning_rate(r["history"], out / "lr.png")
        figs["penalties"] = plots.penalties(r["history"], out / "penalties.png")
    split = "test" if "test" in r["metrics"] else "val" if "val" in r["metrics"] else None
    if split is not None:
        m = r["metrics"][split]
        figs["confusion"] = plots.confusion(m, r["classes"], out / "confusion.png",
                                            f"{split}: confusion matrix (rows normalised)")
        figs["per_class"] = plots.per_class(m, out / "per_class.png", f"{split}: precision and recall per class")
    if gallery is not None:
        figs["wrong"] = plots.wrong_gallery(*gallery, r["classes"], out / "wrong.png")
    elif (out / "wrong.png").is_file():
        figs["wrong"] = out / "wrong.png"
    return figs


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = []
    for split in ("val", "test"):
        m = metrics.get(split)
        if m:
            rows.append(f"<tr><td>{split}</td><td>{m['accuracy']:.4f}</td><td>{m['macro_f1']:.4f}</td>"
                        f"<td>{m['loss']:.4f}</td><td>{m.get('n', '')}</td></tr>")
    head = "<tr><th>split</th><th>accuracy</th><th>macro-F1</th><th>loss</th><th>images</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>" if rows else "<p>no evaluation set</p>"


def _baselines_table(metrics: dict[str, Any]) -> str:
    """The fine-tuned model beside the cheap baselines, on each split they were scored on."""
    scores = metrics.get("baselines") or {}
    splits = [s for s in ("val", "test") if s in scores and s in metrics]
    if not splits:
        return ""
    names = list(dict.fromkeys(n for s in splits for n in scores[s]))
    head = "<tr><th>model</th>" + "".join(f"<th>{s} accuracy</th><th>{s} macro-F1</th>" for s in splits) + "</tr>"

    def row(label: str, get: Any) -> str:
        cells = "".join(f"<td>{get(s)['accuracy']:.4f}</td><td>{get(s)['macro_f1']:.4f}</td>" if get(s) else
                        "<td>-</td><td>-</td>" for s in splits)
        return f"<tr><td>{html.escape(label)}</td>{cells}</tr>"

    body = row("fine-tuned model", lambda s: metrics[s])
    body += "".join(row(n, lambda s, n=n: scores[s].get(n)) for n in names)
    return ('<table class="baselines">' + head + body + "</table><p>baselines: fitted on the training split "
            "(logistic regressions balanced, C by cross-validation; the linear probe on the pretrained features)</p>")


def _per_class_table(m: dict[str, Any]) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    body = "".join(f"<tr><td>{html.escape(c)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td>"
                   f"<td>{v['f1']:.3f}</td><td>{v['support']}</td></tr>" for c, v in m["per_class"].items())
    return f"<table>{head}{body}</table>"


def _data_section(r: dict[str, Any]) -> str:
    d = r["data"]
    if not d:
        return "<p>no data summary recorded</p>"
    splits = list(d["counts"])
    head = "<tr><th>class</th>" + "".join(f"<th>{s}</th>" for s in splits) + "</tr>"
    body = "".join("<tr><td>" + html.escape(c) + "</td>" + "".join(f"<td>{d['counts'][s][i]}</td>" for s in splits)
                   + "</tr>" for i, c in enumerate(d["classes"]))
    out = f"<table>{head}{body}</table>"
    train = d["counts"].get("train", [])
    if train and min(train) > 0 and max(train) / min(train) > 1.5:
        out += (f'<p class="warn">class imbalance: the largest training class has {max(train) / min(train):.1f}x the '
                "images of the smallest</p>")
    if d.get("skipped"):
        out += f'<p class="warn">{len(d["skipped"])} unreadable images skipped</p>' + _pre("\n".join(d["skipped"]))
    return out


def _diagnosis_section(r: dict[str, Any], cfg: Any) -> str:
    diag = r["metrics"].get("diagnosis")
    parts = []
    if diag:
        parts.append(f'<p class="verdict">{html.escape(diag["verdict"])}</p>')
        parts.append("<ul>" + "".join(f"<li>{html.escape(e)}</li>" for e in diag["evidence"]) + "</ul>")
        parts += [f'<p class="warn">{html.escape(w)}</p>' for w in diag["warnings"]]
        if diag["recommendations"]:
            parts.append("<p>try, most promising first:</p>" + _pre("\n".join(diag["recommendations"])))
    stages = sorted({row["stage"] for row in r["history"]})
    for s in stages:
        d = diagnose(r["history"], cfg, stage=s)
        parts.append(f"<h3>stage {s + 1}</h3>" + _pre(d.render()))
    return "".join(parts) or "<p>no epochs recorded</p>"


def write_report(run_dir: str | Path, *, gallery: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Path:
    """Write RUN_DIR/report.html and return its path."""
    from tunelab.config import load_config

    d = Path(run_dir)
    r = _read(d)
    cfg = load_config(d / "config.yaml")
    figs = make_plots(d, r, gallery)
    m = r["metrics"]
    main_split = "test" if "test" in m else "val" if "val" in m else None
    summary = _metrics_table(m)
    if main_split:
        summary = (f"<p>{main_split} accuracy <b>{m[main_split]['accuracy']:.4f}</b>, macro-F1 "
                   f"{m[main_split]['macro_f1']:.4f}; {m.get('n_train', '?')} training {'texts' if cfg.is_text else 'images'}, "
                   f"{len(r['classes'])} classes, backbone {html.escape(cfg.model.backbone)}, "
                   f"{m.get('seconds', 0):.0f} s</p>") + summary
    summary += _baselines_table(m)
    stage_txt = r["stages"]
    model_html = "".join(f"<h3>stage {int(k) + 1}: {html.escape(str(v.get('name')))}</h3>" + _pre(v.get("layers", "")) +
                         (_pre(v["cache"]) if v.get("cache") else "") for k, v in sorted(stage_txt.items()))
    reg_html = "".join(f"<h3>stage {int(k) + 1}</h3>" + _pre(v.get("audit", "")) for k, v in sorted(stage_txt.items()))
    reg_html += _img(figs.get("penalties"), "penalties")
    metrics_html = _metrics_table(m)
    if main_split:
        metrics_html += _img(figs.get("confusion"), "confusion matrix") + _img(figs.get("per_class"), "per-class") + \
            _per_class_table(m[main_split])
    metrics_html += _img(figs.get("wrong"), "most confidently wrong")
    metrics_html += wrong_texts_html(d)
    body = {
        "summary": summary,
        "diagnosis": _diagnosis_section(r, cfg),
        "curves": _img(figs.get("curves"), "loss and accuracy curves") + _img(figs.get("lr"), "learning rate"),
        "metrics": metrics_html,
        "data": _data_section(r),
        "model": model_html or "<p>no stage recorded</p>",
        "regularization": reg_html or "<p>no stage recorded</p>",
        "config": _pre(r["config_text"]),
    }
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    sections = "".join(f'<section id="{s}"><h2>{s}</h2>{body[s]}</section>' for s in SECTIONS)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tunelab report: {html.escape(d.name)}'
            f"</title><style>{_CSS}</style></head><body><h1>tunelab report: {html.escape(d.name)}</h1>"
            f"<nav>{nav}</nav>{sections}</body></html>")
    path = d / "report.html"
    atomic_write_text(path, page)
    return path


def _flatten(x: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        out: dict[str, Any] = {}
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(x, list) and x and all(isinstance(v, dict) for v in x):
        out = {}
        for i, v in enumerate(x):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): x}


def compare(run_dirs: list[str | Path], out: str | Path = "compare.html") -> Path:
    """Runs side by side: the config keys that differ, final metrics, overlaid validation curves."""
    import matplotlib.pyplot as plt

    runs = [(Path(p), _read(Path(p))) for p in run_dirs]
    flat = [_flatten(yaml.safe_load(r["config_text"])) for _, r in runs]
    keys = sorted(k for k in set().union(*flat) if not k.startswith("run.") and len({repr(f.get(k)) for f in flat}) > 1)
    names = [p.name for p, _ in runs]
    head = "<tr><th>key</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    diff = "".join("<tr><td>" + html.escape(k) + "</td>" + "".join(f"<td>{html.escape(str(f.get(k, '')))}</td>" for f in flat)
                   + "</tr>" for k in keys)
    met = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    for split in ("val", "test"):
        for key in ("accuracy", "macro_f1", "loss"):
            vals = [r["metrics"].get(split, {}).get(key) for _, r in runs]
            if any(v is not None for v in vals):
                met += f"<tr><td>{split} {key}</td>" + "".join(
                    f"<td>{v:.4f}</td>" if v is not None else "<td></td>" for v in vals) + "</tr>"
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for (p, r) in runs:
        x = np.arange(1, len(r["history"]) + 1)
        for ax, key in zip(axes, ("val_loss", "val_accuracy")):
            ax.plot(x, [h.get(key) for h in r["history"]], "o-", ms=3, label=p.name)
            ax.set_title(key.replace("_", " "))
            ax.set_xlabel("epoch (all stages)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    out = Path(out)
    png = out.with_suffix(".png")
    plots._save(fig, png)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tunelab comparison</title>'
            f"<style>{_CSS}</style></head><body><h1>tunelab comparison</h1>"
            f'<section id="config"><h2>config differences</h2><table>{head}{diff or "<tr><td>none</td></tr>"}</table></section>'
            f'<section id="metrics"><h2>final metrics</h2><table>{met}</table></section>'
            f'<section id="curves"><h2>validation curves</h2>{_img(png, "validation curves")}</section></body></html>')
    atomic_write_text(out, page)
    return out


def wrong_texts_html(run_dir: Path, max_chars: int = 300) -> str:
    """An HTML table of RUN_DIR/wrong_texts.json, or '' when the run has none."""
    path = run_dir / WRONG_TEXTS
    if not path.is_file():
        return ""
    rows = json.loads(path.read_text())
    if not rows:
        return "<p>no misclassified validation texts</p>"
    head = "<tr><th>text</th><th>true</th><th>predicted</th><th>probability</th></tr>"
    body = "".join(
        f'<tr><td style="text-align:left">{html.escape(r["text"][:max_chars] + ("..." if len(r["text"]) > max_chars else ""))}'
        f'</td><td>{html.escape(r["true"])}</td><td>{html.escape(r["predicted"])}</td><td>{r["probability"]:.3f}</td></tr>'
        for r in rows)
    return f"<h3>most confidently wrong validation texts</h3><table>{head}{body}</table>"
