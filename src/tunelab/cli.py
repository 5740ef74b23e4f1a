"""``tunelab`` command line: parses arguments and calls the library function a Python user calls."""

from __future__ import annotations

import argparse
import json
import sys

from tunelab.errors import TunelabError


def _fit(a: argparse.Namespace) -> None:
    from tunelab.config import load_config

    if a.resume is None and a.config is None:
        raise TunelabError("tunelab fit: give a CONFIG file, or --resume RUN_DIR")
    if a.resume is not None and (a.config is not None or a.set):
        given = " and ".join(x for x, v in (("CONFIG", a.config), ("--set", a.set)) if v)
        raise TunelabError(f"tunelab fit: a resume continues {a.resume} with the config saved in it "
                           f"({a.resume}/config.yaml), so {given} would be ignored; give --resume RUN_DIR alone, "
                           "or CONFIG without --resume for a new run")
    # the config is checked before torch is imported: a typo is reported in a fraction of a second
    cfg = load_config(a.config, a.set) if a.resume is None else None
    from tunelab.pipeline import fit

    run = fit(cfg, resume=a.resume)
    if run.rank != 0:  # one summary per distributed run
        return
    test = run.metrics.get("test") or run.metrics.get("val")
    if test is not None:
        which = "test" if "test" in run.metrics else "val"
        print(f"\nfinal {which} accuracy: {test['accuracy']:.4f}  (macro-F1 {test['macro_f1']:.4f}, n={test['n']})")
    print(f"run folder: {run.dir}")
    print(f"report: {run.dir / 'report.html'}")


def _tune(a: argparse.Namespace) -> None:
    from tunelab.search import tune

    result = tune(a.config, overrides=a.set, trials=a.trials, storage=a.storage, study_name=a.study, timeout=a.timeout)
    counts = result.counts()
    print(f"\nstudy '{result.study.study_name}': " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"best trial {result.best_trial}: {result.metric} {result.best_value:.4f}")
    for key, value in result.best_params.items():
        print(f"  {key} = {json.dumps(value)}")
    print(f"best config: {result.best_config}\n  tunelab fit {result.best_config}")
    print(f"report: {result.report}")


def _evaluate(a: argparse.Namespace) -> None:
    from tunelab.api import evaluate
    from tunelab.metrics import format_metrics, per_class_table

    m = evaluate(a.run_dir, data=a.data)
    if a.json:
        print(json.dumps(m, indent=1))
        return
    print(per_class_table(m))
    print(format_metrics(m))


def _predict(a: argparse.Namespace) -> None:
    from tunelab.api import predict

    if not a.inputs and not a.text:
        raise TunelabError("tunelab predict: give image files or folders, or for a text model --text TEXT or text files")
    for p in predict(a.target, a.inputs, top_k=a.top_k, texts=a.text):
        print(p.path if p.text is None else f"{p.path}: {p.text if len(p.text) <= 100 else p.text[:97] + '...'}")
        for name, prob in p.top:
            print(f"  {prob:6.3f}  {name}")


def _report(a: argparse.Namespace) -> None:
    from tunelab.report import write_report

    print(write_report(a.run_dir))


def _compare(a: argparse.Namespace) -> None:
    from tunelab.report import compare

    print(compare(a.run_dirs, a.out))


def _summary(a: argparse.Namespace) -> None:
    from tunelab.api import summary

    print(summary(a.config, a.set))


def _export(a: argparse.Namespace) -> None:
    from tunelab.exports import export

    print(export(a.run_dir, a.format, a.out, check=a.check).describe())


def _extract(a: argparse.Namespace) -> None:
    from tunelab.features import extract

    f = extract(a.source, a.data, out=a.out, batch_size=a.batch_size, device=a.device)
    labelled = int((f.labels >= 0).sum())
    print(f"{len(f.items)} x {f.features.shape[1]} features ({labelled} labelled, {len(f.classes)} classes) in "
          f"{f.info['model_seconds']:.1f} s on {f.info['device']}; written to {a.out}")


def _models(a: argparse.Namespace) -> None:
    from tunelab.backbones import list_backbones

    infos = list_backbones(a.pattern, pretrained_only=a.pretrained)
    offline = [i for i in infos if i.offline]
    rows = offline if a.offline else infos
    for i in rows:
        print(f"{i.name:<50} {('offline: ' + i.offline) if i.offline else 'hub'}")
    print(f"\n{len(infos)} models match '{a.pattern}'; usable offline now: {len(offline)}"
          + (f" ({', '.join(i.name for i in offline)})" if offline and len(offline) <= 10 else ""))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunelab", description="Fine-tune pretrained networks on your own data.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train per a YAML config; writes a run folder")
    f.add_argument("config", nargs="?", help="YAML config file")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set stages.0.lr=3e-4 (repeatable)")
    f.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run where it stopped")
    f.set_defaults(func=_fit)

    t = sub.add_parser("tune", help="hyperparameter search (Optuna); writes the best config for fit")
    t.add_argument("config", help="YAML config file; its tune: section says what is searched")
    t.add_argument("--trials", type=int, metavar="N", help="trials to run now (default: tune.trials, 20); 0: only "
                   "rewrite best.yaml and tune.html from the study")
    t.add_argument("--storage", metavar="URL", help="Optuna database shared by workers, e.g. "
                   "postgresql://user:pass@host/db (default: sqlite:///STUDY_DIR/study.db)")
    t.add_argument("--study", metavar="NAME", help="study name and folder under run.dir (default: <run.name>-tune)")
    t.add_argument("--timeout", type=float, metavar="SECONDS", help="start no new trial after this long")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every trial (repeatable)")
    t.set_defaults(func=_tune, interrupted="interrupted; what finished is in the study: run the same command "
                   "again to add trials")
    e = sub.add_parser("evaluate", help="metrics of a finished run")
    e.add_argument("run_dir")
    e.add_argument("--data", help="folder, CSV manifest or built-in name; for a text run a CSV/TSV/JSON lines "
                   "file with the text and label columns (default: the run's test set)")
    e.add_argument("--json", action="store_true", help="print all metrics as JSON")
    e.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="top-k classes for images or texts")
    pr.add_argument("target", help="a run folder, or a config with model.num_classes: imagenet")
    pr.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER_OR_TEXT_FILE",
                    help="images or folders; for a text run, files: a CSV/TSV/JSON lines file (the text column) "
                    "or one text per line")
    pr.add_argument("--text", action="append", default=[], metavar="TEXT", help="a text to classify (repeatable)")
    pr.add_argument("--top-k", type=int, default=5)
    pr.set_defaults(func=_predict)

    r = sub.add_parser("report", help="write RUN_DIR/report.html (curves, diagnosis, metrics, audit)")
    r.add_argument("run_dir")
    r.set_defaults(func=_report)

    c = sub.add_parser("compare", help="runs side by side: config differences, metrics, validation curves")
    c.add_argument("run_dirs", nargs="+")
    c.add_argument("--out", default="compare.html")
    c.set_defaults(func=_compare)

    s = sub.add_parser("summary", help="per-stage layer table of a config, without training")
    s.add_argument("config")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(func=_summary)

    x = sub.add_parser("export", help="a finished run as ONNX, TorchScript, a timm or a transformers folder")
    x.add_argument("run_dir")
    x.add_argument("--format", default="onnx", choices=["onnx", "torchscript", "timm", "transformers"],
                   help="onnx, torchscript (raw uint8 images or token ids in, logits out, any batch size), timm "
                   "(image runs) or transformers (text runs)")
    x.add_argument("--out", metavar="PATH", help="file (onnx, torchscript) or folder (default: RUN_DIR/export/...)")
    x.add_argument("--check", type=int, default=100, metavar="N", help="compare with PyTorch on N examples of the run's "
                   "test data (default: 100)")
    x.set_defaults(func=_export)

    xt = sub.add_parser("extract", help="pooled features of images or texts from a pretrained backbone or a run")
    xt.add_argument("source", help="a finished run folder, or a config (its pretrained backbone)")
    xt.add_argument("data", help="an image folder (class subfolders give labels), a CSV manifest, a built-in set; for a "
                    "text model a CSV/TSV/JSON lines file or a file of one text per line")
    xt.add_argument("--out", required=True, metavar="FOLDER", help="writes features.npy, index.csv, meta.json")
    xt.add_argument("--batch-size", type=int, metavar="N", help="default: the config's data.eval_batch_size")
    xt.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    xt.set_defaults(func=_extract)

    m = sub.add_parser("models", help="list backbones and which are usable offline now")
    m.add_argument("pattern", nargs="?", default="*", help="glob, e.g. '*efficientnet*'")
    m.add_argument("--pretrained", action="store_true", help="only architectures with pretrained weights")
    m.add_argument("--offline", action="store_true", help="only those usable offline now")
    m.set_defaults(func=_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", "interrupted; continue with `tunelab fit --resume RUN_DIR`"), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
