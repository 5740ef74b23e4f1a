"""``tunelab`` command line: parses arguments and calls the library function a Python user calls."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from tunelab.errors import Interrupted, TunelabError

if TYPE_CHECKING:
    from typing import TypeAlias

    Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _final_line(m: dict[str, Any]) -> str:
    """The last line of a fit: the primary metric (the first the objective reports), then the second."""
    from tunelab.metrics import SHOWN

    first, second = [k for k, v in m.items() if isinstance(v, float) and k != "loss"][:2]
    return f"{SHOWN.get(first, first)}: {m[first]:.4f}  ({SHOWN.get(second, second)} {m[second]:.4f}, n={m['n']})"


def _fit(a: argparse.Namespace) -> None:
    from tunelab.config import load_config

    if a.resume is None and a.config is None:
        raise TunelabError("tunelab fit: give a CONFIG file, or --resume RUN_DIR")
    if a.resume is not None and (a.config is not None or a.set):
        given = " and ".join(x for x, v in (("CONFIG", a.config), ("--set", a.set)) if v)
        raise TunelabError(
            f"tunelab fit: a resume continues {a.resume} with the config saved in it "
            f"({a.resume}/config.yaml), so {given} would be ignored; give --resume RUN_DIR alone, "
            "or CONFIG without --resume for a new run"
        )
    # the config is checked before torch is imported: a typo is reported in a fraction of a second
    cfg = load_config(a.config, a.set) if a.resume is None else None
    from tunelab.pipeline import fit

    run = fit(cfg, resume=a.resume)
    if run.rank != 0:  # one summary per distributed run
        return
    test = run.metrics.get("test") or run.metrics.get("val")
    if test is not None:
        which = "test" if "test" in run.metrics else "val"
        print(f"\nfinal {which} {_final_line(test)}")
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
    table = per_class_table(m)
    if table:
        print(table)
    print(format_metrics(m))


def _predict(a: argparse.Namespace) -> None:
    from tunelab.api import predict

    if not a.inputs and not a.text:
        raise TunelabError("tunelab predict: give image files or folders, or for a text model --text TEXT or text files")
    for p in predict(a.target, a.inputs, top_k=a.top_k, texts=a.text):
        print(p.path if p.text is None else f"{p.path}: {p.text if len(p.text) <= 100 else p.text[:97] + '...'}")
        if p.value is not None:
            print(f"  {p.top[0][0]}: {p.value:.6g}")
            continue
        if p.labels is not None:
            print(f"  labels: {', '.join(p.labels) or '(none over its threshold)'}")
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
    print(
        f"{len(f.items)} x {f.features.shape[1]} features ({labelled} labelled, {len(f.classes)} classes) in "
        f"{f.info['model_seconds']:.1f} s on {f.info['device']}; written to {a.out}"
    )


def _models(a: argparse.Namespace) -> None:
    from tunelab.vision.backbones import list_backbones

    infos = list_backbones(a.pattern, pretrained_only=a.pretrained)
    offline = [i for i in infos if i.offline]
    rows = offline if a.offline else infos
    for i in rows:
        print(f"{i.name:<50} {('offline: ' + i.offline) if i.offline else 'hub'}")
    print(
        f"\n{len(infos)} models match '{a.pattern}'; usable offline now: {len(offline)}"
        + (f" ({', '.join(i.name for i in offline)})" if offline and len(offline) <= 10 else "")
    )


def _add_fit(sub: Subparsers) -> None:
    p = sub.add_parser("fit", help="train per a YAML config; writes a run folder")
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set stages.0.lr=3e-4 (repeatable)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run where it stopped")
    p.set_defaults(func=_fit, interrupted="stopped before training began: run the same command again")


def _add_tune(sub: Subparsers) -> None:
    p = sub.add_parser("tune", help="hyperparameter search (Optuna); writes the best config for fit")
    p.add_argument("config", help="YAML config file; its tune: section says what is searched")
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="trials to run now (default: tune.trials, 20); 0: only rewrite best.yaml and tune.html from the study",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna database shared by workers, e.g. postgresql://user:pass@host/db (default: sqlite:///STUDY_DIR/study.db)",
    )
    p.add_argument("--study", metavar="NAME", help="study name and folder under run.dir (default: <run.name>-tune)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="start no new trial after this long")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value for every trial (repeatable)"
    )
    p.set_defaults(func=_tune, interrupted="what finished is in the study: run the same command again to add trials")


def _add_evaluate(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="metrics of a finished run")
    p.add_argument("run_dir")
    p.add_argument(
        "--data",
        help="folder, CSV manifest or built-in name; for a text run a CSV/TSV/JSON lines "
        "file with the text and label columns (default: the run's test set)",
    )
    p.add_argument("--json", action="store_true", help="print all metrics as JSON")
    p.set_defaults(func=_evaluate)


def _add_predict(sub: Subparsers) -> None:
    p = sub.add_parser("predict", help="top-k classes for images or texts")
    p.add_argument("target", help="a run folder, or a config with model.num_classes: imagenet")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="IMAGE_OR_FOLDER_OR_TEXT_FILE",
        help="images or folders; for a text run, files: a CSV/TSV/JSON lines file (the text column) or one text per line",
    )
    p.add_argument("--text", action="append", default=[], metavar="TEXT", help="a text to classify (repeatable)")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=_predict)


def _add_report(sub: Subparsers) -> None:
    p = sub.add_parser("report", help="write RUN_DIR/report.html (curves, diagnosis, metrics, audit)")
    p.add_argument("run_dir")
    p.set_defaults(func=_report)


def _add_compare(sub: Subparsers) -> None:
    p = sub.add_parser("compare", help="runs side by side: config differences, metrics, validation curves")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="compare.html")
    p.set_defaults(func=_compare)


def _add_summary(sub: Subparsers) -> None:
    p = sub.add_parser("summary", help="per-stage layer table of a config, without training")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_summary)


def _add_export(sub: Subparsers) -> None:
    p = sub.add_parser("export", help="a finished run as ONNX, TorchScript, a timm or a transformers folder")
    p.add_argument("run_dir")
    p.add_argument(
        "--format",
        default="onnx",
        help="onnx, torchscript (raw uint8 images or token ids in, logits out, any batch size), timm "
        "(image runs) or transformers (text runs)",
    )
    p.add_argument("--out", metavar="PATH", help="file (onnx, torchscript) or folder (default: RUN_DIR/export/...)")
    p.add_argument(
        "--check",
        type=int,
        default=100,
        metavar="N",
        help="compare with PyTorch on N examples of the run's test data (default: 100)",
    )
    p.set_defaults(func=_export)


def _add_extract(sub: Subparsers) -> None:
    p = sub.add_parser("extract", help="pooled features of images or texts from a pretrained backbone or a run")
    p.add_argument("source", help="a finished run folder, or a config (its pretrained backbone)")
    p.add_argument(
        "data",
        help="an image folder (class subfolders give labels), a CSV manifest, a built-in set; for a "
        "text model a CSV/TSV/JSON lines file or a file of one text per line",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FOLDER",
        help="a folder of its own: features.npy, index.csv, meta.json (an earlier output there is replaced whole)",
    )
    p.add_argument("--batch-size", type=int, metavar="N", help="default: the config's data.eval_batch_size")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_extract)


def _add_models(sub: Subparsers) -> None:
    p = sub.add_parser("models", help="list backbones and which are usable offline now")
    p.add_argument("pattern", nargs="?", default="*", help="glob, e.g. '*efficientnet*'")
    p.add_argument("--pretrained", action="store_true", help="only architectures with pretrained weights")
    p.add_argument("--offline", action="store_true", help="only those usable offline now")
    p.set_defaults(func=_models)


# one function a subcommand, each adding its own parser (as accelerate's commands do)
COMMANDS = (
    _add_fit,
    _add_tune,
    _add_evaluate,
    _add_predict,
    _add_report,
    _add_compare,
    _add_summary,
    _add_export,
    _add_extract,
    _add_models,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tunelab", description="Fine-tune pretrained networks on your own data.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


# what an interrupted command says: fit names the run folder to resume once it has one; the other
# commands (evaluate, predict, report, ...) keep no state to continue from
RUN_AGAIN = "nothing to continue from: run the same command again"


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's or ``kill``'s stop) ends a command as Ctrl-C does: cleanly, with the
    message on how to carry on."""
    raise Interrupted(signum=signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        previous = None
    try:
        args.func(args)
    except TunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        # fit's exception names the run folder; a tune trial's must not (trials are not resumed)
        how = (getattr(e, "how", "") if args.func is _fit else "") or getattr(args, "interrupted", RUN_AGAIN)
        print(f"{'interrupted' if signum == signal.SIGINT else signal.Signals(signum).name}; {how}", file=sys.stderr)
        return 128 + signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
