"""Fault injection: kill -9 a tiny fit at random points of its own log (cache extraction, stage
boundaries, the final evaluation, the report), resume each, and check that every resume ends with
the uninterrupted run's metrics. TUNELAB_FAULT_KILLS sets how many kills (default 3),
TUNELAB_FAULT_SEED which points (default: new ones each run; the seed is printed)."""

import hashlib
import json
import os
import random
import re
import subprocess
import sys

import pytest
import yaml

KILLS = int(os.environ.get("TUNELAB_FAULT_KILLS", "3"))
# the first line of each thing the log reports; a kill lands just after one of them
MARKERS = re.compile(
    r"^(run folder|data:|backbone|stage \d+/\d+ '|cache:|stage \d+ epoch|diagnosis|per-class|val:|"
    r"test:|report:|final test accuracy)"
)


def _fit(args, env):
    return [sys.executable, "-m", "tunelab", "fit", *args]


def _write(tmp_path, cfg, name):
    cfg["run"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _killed_after(cmd, env, line_no):
    """Start ``cmd`` and SIGKILL it as soon as its stdout has ``line_no`` lines; the last line seen."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    seen, last = 0, ""
    for line in proc.stdout:
        seen, last = seen + 1, line.strip()
        if seen >= line_no:
            proc.kill()
            break
    proc.wait()
    return last


def _kill_then_resume(tmp_path, cfg, name, line_no, env, seed):
    """Run ``cfg`` as ``name``, SIGKILL it after stdout line ``line_no``, resume it: (its folder,
    where it was killed, for the assertion messages)."""
    last = _killed_after(_fit([str(_write(tmp_path, cfg, name))], env), env, line_no)
    resumed = subprocess.run(
        _fit(["--resume", str(tmp_path / "runs" / name)], env), env=env, capture_output=True, text=True, timeout=300
    )
    where = f"killed after stdout line {line_no} ({last[:60]!r}), seed {seed}"
    assert resumed.returncode == 0, f"{where}: {resumed.stderr}"
    return tmp_path / "runs" / name, where


def _outcome(run_dir):
    """What must not change with a kill: the (stage, epoch) rows, the final metrics and every epoch's losses."""
    final = json.loads((run_dir / "metrics.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    numbers = [final[s][k] for s in ("val", "test") for k in ("accuracy", "loss")]
    numbers += [r[k] for r in rows for k in ("train_loss", "val_loss")]
    return [(r["stage"], r["epoch"]) for r in rows], numbers


def test_sigkill_at_random_log_markers_then_resume_ends_like_the_uninterrupted_run(tiny_cfg, tmp_path, capsys):
    tiny_cfg["run"]["baselines"] = False
    tiny_cfg["model"]["head"] = {"dropout": 0.3}  # dropout draws from the RNG: a resume must restore it
    tiny_cfg["stages"][0]["epochs"], tiny_cfg["stages"][1]["epochs"] = 2, 2
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # lines arrive as they are logged
    clean = subprocess.run(
        _fit([str(_write(tmp_path, tiny_cfg, "clean"))], env), env=env, capture_output=True, text=True, timeout=300
    )
    assert clean.returncode == 0, clean.stderr
    expected = _outcome(tmp_path / "runs" / "clean")
    markers = [i + 1 for i, line in enumerate(clean.stdout.splitlines()) if MARKERS.match(line)]
    seed = int(os.environ.get("TUNELAB_FAULT_SEED", random.randrange(10**6)))
    points = sorted(random.Random(seed).sample(markers, min(KILLS, len(markers))))
    for n, line_no in enumerate(points):
        run_dir, where = _kill_then_resume(tmp_path, tiny_cfg, f"kill{n}", line_no, env, seed)
        got = _outcome(run_dir)
        assert got[0] == expected[0], where
        assert got[1] == pytest.approx(expected[1], abs=1e-5), where
    with capsys.disabled():
        print(
            f"\nfault injection: {len(points)} kill(s) at stdout lines {points} of {len(markers)} markers "
            f"(TUNELAB_FAULT_SEED={seed}); every resume ended with the uninterrupted run's metrics"
        )


TEXT_KILLS = int(os.environ.get("TUNELAB_FAULT_TEXT_KILLS", "3"))
TEXT_MARKERS = re.compile(
    r"^(run folder|data:|train:|backbone|stage \d+/\d+ '|cache:|stage \d+ epoch|diagnosis|"
    r"lexical blend|refit:|per-class|val:|test:|report:|final test accuracy)"
)


def _text_outcome(run_dir):
    """What must not change with a kill, bit for bit: the model file and every final metric."""
    final = json.loads((run_dir / "metrics.json").read_text())
    final.pop("seconds")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["stage"], r["epoch"], r["train_loss"], r.get("val_loss")) for r in rows]
    return hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest(), final, losses


def _text_points(lines, seed):
    """Kill points (stdout line numbers): just after the lexical blend's line, one inside the
    refit, and the rest at random markers."""
    markers = [i + 1 for i, line in enumerate(lines) if TEXT_MARKERS.match(line)]
    blend = next(i + 1 for i, line in enumerate(lines) if line.startswith("lexical blend"))
    refit_at = next(i for i, line in enumerate(lines) if line.startswith("refit:"))
    rng = random.Random(seed)
    refit = rng.choice([m for m in markers if m > refit_at and lines[m - 1].startswith("stage")] or [refit_at + 1])
    rest = [m for m in markers if m not in (blend, refit)]
    return sorted({blend, refit, *rng.sample(rest, min(max(TEXT_KILLS - 2, 0), len(rest)))})


def test_sigkill_of_a_text_run_in_training_the_lexical_blend_and_the_refit_then_resume_ends_bit_for_bit(
    tiny_text_cfg, tmp_path, capsys
):
    """A text run with the lexical blend and a refit, killed at random points of its log: every
    resume ends with the uninterrupted run's model file (sha256) and metrics, bit for bit."""
    cfg = json.loads(json.dumps(tiny_text_cfg))
    cfg["run"].update(baselines=False, threads=1)
    cfg["data"]["refit"] = "always"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    clean = subprocess.run(_fit([str(_write(tmp_path, cfg, "clean"))], env), env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    expected = _text_outcome(tmp_path / "runs" / "clean")
    seed = int(os.environ.get("TUNELAB_FAULT_SEED", random.randrange(10**6)))
    points = _text_points(clean.stdout.splitlines(), seed)
    for n, line_no in enumerate(points):
        run_dir, where = _kill_then_resume(tmp_path, cfg, f"kill{n}", line_no, env, seed)
        got = _text_outcome(run_dir)
        assert got[0] == expected[0], f"{where}: another model file"
        assert got[1:] == expected[1:], where
    with capsys.disabled():
        print(
            f"\nfault injection (text): {len(points)} kill(s) at stdout lines {points} "
            f"(TUNELAB_FAULT_SEED={seed}); every resume ended with the uninterrupted run's model file and metrics"
        )
