"""Run folders: one writer at a time, folders no two fits share, metrics rows a kill cut short."""

import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tunelab
from tunelab.config import build_config
from tunelab.errors import ConfigError, RunError
from tunelab.runs import lock_run_dir, new_run_dir, read_history, remove_stale_files


def _claim_folder(run_dir: str, start: "multiprocessing.synchronize.Barrier", out: "multiprocessing.Queue") -> None:
    cfg = build_config({"run": {"dir": run_dir, "name": "same"}})
    start.wait()  # every process asks at the same moment
    out.put(str(new_run_dir(cfg)))


def test_processes_asking_for_the_same_name_at_once_get_folders_of_their_own(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    n = 6
    start, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claim_folder, args=(str(tmp_path), start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    got = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got == sorted(str(tmp_path / name) for name in ["same"] + [f"same-{i}" for i in range(2, n + 1)])


def test_an_empty_folder_made_by_hand_is_used_and_a_used_one_is_not(tmp_path):
    cfg = build_config({"run": {"dir": str(tmp_path), "name": "r"}})
    (tmp_path / "r").mkdir()
    assert new_run_dir(cfg) == tmp_path / "r"
    assert new_run_dir(cfg) == tmp_path / "r-2"  # r holds its lock file now


def test_run_dir_that_is_a_file_is_a_config_error(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"run.dir: .*runs is a file, not a folder"):
        new_run_dir(build_config({"run": {"dir": str(tmp_path / "runs")}}))
    with pytest.raises(ConfigError, match=r"run.dir: .*runs/sub cannot be created: a part of that path is a file"):
        new_run_dir(build_config({"run": {"dir": str(tmp_path / "runs" / "sub")}}))


def _hold_lock(run_dir: str, locked: "multiprocessing.synchronize.Event", release: "multiprocessing.synchronize.Event") -> None:
    with lock_run_dir(Path(run_dir)):
        locked.set()
        release.wait(60)


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_dead_holder_blocks_nobody(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    locked, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), locked, release))
    holder.start()
    try:
        assert locked.wait(60)
        with pytest.raises(RunError, match=rf"in use by another tunelab process \(pid {holder.pid} on "), lock_run_dir(tmp_path):
            pass
    finally:
        holder.kill()  # like kill -9: the OS releases the lock
        holder.join()
    with lock_run_dir(tmp_path):
        assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()} ")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunelab", *args]


def test_two_resumes_of_one_folder_at_once_one_runs_the_other_is_refused(tiny_cfg, tmp_path):
    tiny_cfg["run"]["baselines"] = False
    # an interrupted run: killed before its first epoch ended (config written, no checkpoint yet)
    tiny_cfg["stages"] = [{"train": "head", "epochs": 30, "lr": 1e-2}]
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(tiny_cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            _cli("fit", "--resume", str(run_dir)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in outs)
    assert codes == [0, 2], outs
    refused = next(err for rc, _, err in outs if rc == 2)
    winner = next(p for p, (rc, _, _) in zip(procs, outs) if rc == 0)
    assert f"is in use by another tunelab process (pid {winner.pid} on " in refused
    assert "Traceback" not in refused
    # the one writer's rows only: no epoch written twice
    assert [(r["stage"], r["epoch"]) for r in read_history(run_dir)] == [(0, e) for e in range(30)]


def test_resume_with_a_half_written_metrics_row_cuts_it_off(tiny_cfg):
    tiny_cfg["run"]["baselines"] = False
    run = tunelab.fit({**tiny_cfg, "stages": [{"train": "head", "epochs": 2, "lr": 1e-2}]})
    path = run.dir / "metrics.jsonl"
    full = path.read_text()
    path.write_text(full + full.splitlines()[0][:25])  # a kill while the next row was written
    assert len(read_history(run.dir)) == 2
    tunelab.fit(resume=run.dir)
    assert path.read_text() == full


def test_a_damaged_row_inside_metrics_names_the_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"stage": 0, "epoch": 0}\n{"stage": 0, "ep\n{"stage": 0, "epoch": 2}\n')
    with pytest.raises(RunError, match=r"metrics.jsonl, line 2: not a JSON row"):
        read_history(tmp_path)


def test_resume_removes_temporary_files_a_killed_writer_left(tiny_cfg):
    tiny_cfg["run"]["baselines"] = False
    run = tunelab.fit({**tiny_cfg, "stages": [{"train": "head", "epochs": 1, "lr": 1e-2}]})
    orphans = [
        run.dir / ".stages.json.k2j3h.tmp",
        run.dir / "checkpoints" / ".last.safetensors.x8d.tmp",
        run.dir / "cache" / "abc.host-123.partial.npy",
    ]
    for p in orphans:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half")
    tunelab.fit(resume=run.dir)
    assert not any(p.exists() for p in orphans)
    assert "removed 3 temporary file(s) an interrupted process left behind" in (run.dir / "log.txt").read_text()
    assert remove_stale_files(run.dir) == []


def test_resume_and_a_config_together_is_an_error(tiny_cfg, tmp_path, capsys):
    from tunelab.cli import main

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(tiny_cfg))
    with pytest.raises(ConfigError, match=r"a resume continues .* with the config saved in it"):
        tunelab.fit(tiny_cfg, resume=tmp_path)
    assert main(["fit", str(p), "--resume", str(tmp_path)]) == 2
    assert "so CONFIG would be ignored; give --resume RUN_DIR alone" in capsys.readouterr().err
    assert main(["fit", "--resume", str(tmp_path), "--set", "run.seed=1"]) == 2
    assert f"a resume continues {tmp_path} with the config saved in it" in capsys.readouterr().err


def test_resume_removes_the_temporary_file_a_kill_inside_the_safetensors_save_left(image_run, tmp_path):
    """Was: never removed. safetensors writes its own `.tmpXXXXXX` (Rust's tempfile) and renames it."""
    d = shutil.copytree(image_run, tmp_path / "run")
    orphan = d / "checkpoints" / ".tmpA1b2C3"
    orphan.write_bytes(b"\0" * (d / "checkpoints" / "last.safetensors").stat().st_size)
    notes = d / ".tmp-notes.txt"  # not a name tunelab writes: kept
    notes.write_text("mine")
    tunelab.fit(resume=d)
    assert not orphan.exists() and notes.exists()
    assert "removed 1 temporary file(s) an interrupted process left behind: checkpoints/.tmpA1b2C3" in (d / "log.txt").read_text()


@pytest.mark.parametrize("name", ["log.txt", ".lock"])
def test_a_run_file_that_is_a_symbolic_link_is_refused_and_its_target_left_alone(image_run, tmp_path, name, capsys):
    """Was: a resume appended its log to the file log.txt pointed to."""
    from tunelab.cli import main

    d = shutil.copytree(image_run, tmp_path / "run")
    target = tmp_path / "elsewhere.txt"
    target.write_text("not tunelab's\n")
    (d / name).unlink()
    (d / name).symlink_to(target)
    assert main(["fit", "--resume", str(d)]) == 2
    err = capsys.readouterr().err
    assert (
        f"error: {d / name} is a symbolic link (to {target}); tunelab writes only files of its own in a run "
        "folder: remove the link"
        in err
        and "Traceback" not in err
    )
    assert target.read_text() == "not tunelab's\n"


def test_a_metrics_row_is_never_appended_through_a_symbolic_link(tmp_path):
    from tunelab.engine.writer import append_metrics

    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    (tmp_path / "metrics.jsonl").symlink_to(target)
    with pytest.raises(RunError, match=r"metrics.jsonl is a symbolic link \(to .*elsewhere.jsonl\)"):
        append_metrics(tmp_path / "metrics.jsonl", {"stage": 0, "epoch": 0})
    assert target.read_text() == ""


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("classes.json", '["class0", "class1"', r"classes.json is not JSON \(Expecting"),
        ("classes.json", '{"0": "class0"}', r"classes.json holds a JSON dict, where the run wrote a JSON list"),
        (
            "classes.json",
            '["class0", 1]',
            r"classes.json must be a JSON list of the class names \(strings, each once, in "
            r"the order of the model's outputs\), but 1 is not a string",
        ),
        ("metrics.json", "{oops", r"metrics.json is not JSON"),
        ("metrics.json", "[1, 2]", r"metrics.json holds a JSON list, where the run wrote a JSON object"),
        ("metrics.json", '{"test": {"accuracy": "high"}}', r"metrics.json: test has accuracy 'high', not a number"),
    ],
    ids=["classes-cut", "classes-dict", "classes-number", "metrics-cut", "metrics-list", "metrics-wrong-type"],
)
def test_an_edited_classes_or_metrics_file_is_an_error_naming_it(image_run, tmp_path, name, text, problem, capsys):
    """Was: a JSONDecodeError, TypeError or KeyError traceback in predict, evaluate and report."""
    import re

    from tunelab.cli import main

    d = shutil.copytree(image_run, tmp_path / "run")
    (d / name).write_text(text)
    image = next(Path(tunelab.load_config(d / "config.yaml").data.train).glob("*/*.png"))
    commands = [["report", str(d)], ["evaluate", str(d)], ["predict", str(d), str(image)]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert re.search(rf"error: {re.escape(str(d))}/{problem}", err), (argv, err)
        assert (
            "restore it from a copy; `tunelab fit --resume" in err or "restore the file from a copy; `tunelab fit --resume" in err
        ), err
        assert "Traceback" not in err
    tunelab.fit(resume=d)  # as the message says: the resume writes the file again
    assert tunelab.load_run(d).classes == [f"class{i}" for i in range(10)]
