"""Reliability, round two (issue 16), through the real command line: output stays inside
results_dir, unreadable files are skipped by name, a full disk is one line, values that
cannot train are refused, planning scales, and what reproducibility covers is flagged.

Some tests need a private mount (a tiny tmpfs, a read-only bind): they run the command in
`unshare -rm` and skip where user namespaces are not available."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, bnbench, dead_pid, plant_claim, same_metrics

from bnbench.config.identity import run_id
from bnbench.config.schema import ConfigError
from bnbench.store.files import HOLD_FILE, mount_point
from bnbench.sweep.plan import expand

FAST = [*TINY, "threads=1"]


def strict_json(path: Path):
    """json.loads that refuses the NaN / Infinity tokens Python writes by default."""

    def refuse(token: str):
        raise ValueError(f"{path} holds bare {token}: not valid JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: strict_json(p) for p in sweep.glob("runs/*/summary.json")}


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def in_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a shell script as root of a fresh user and mount namespace (private mounts)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces unavailable: {probe.stderr.decode().strip()}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PY": sys.executable}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two finished tiny runs (BN and no BN), made by `bnbench run`."""
    root = tmp_path_factory.mktemp("sweep")
    bnbench("run", *FAST, f"results_dir={root}", "sweep=s", "-m", "model.norm=batch,none", cwd=root)
    return root / "s"


@pytest.fixture
def copy(sweep: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sweep, tmp_path / "results" / "s"))


# --- 1. the sweep stays inside results_dir ---------------------------------------------------


@pytest.mark.parametrize("name", ["/abs/path", "../../etc", "", "a/b", ".", ".."])
def test_a_sweep_name_that_leaves_results_dir_is_refused(tmp_path, name):
    cwd = tmp_path / "deep" / "er"
    cwd.mkdir(parents=True)
    result = bnbench("run", *FAST, "results_dir=res", f"sweep={name}", cwd=cwd, check=False)
    assert result.returncode == 2
    assert last_line(result) == (
        f"bnbench: invalid sweep={name!r}: must be a plain directory name inside "
        "results_dir (no /, no .., not empty)"
    )
    assert not list(tmp_path.rglob("*.csv")) and not (cwd / "res").exists()


# --- 3. report skips what it cannot read -----------------------------------------------------


@pytest.mark.parametrize("content", ["[1, 2]", '"done"', "3"])
def test_report_skips_a_summary_that_is_not_an_object(copy, content):
    broken = sorted(copy.glob("runs/*"))[0]
    (broken / "summary.json").write_text(content)
    result = bnbench("report", str(copy), cwd=copy, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"warning: skipped {broken}: summary.json holds a JSON" in result.stderr
    assert "read 1 run(s), skipped 1" in result.stdout


def test_report_of_read_only_results_says_so_in_one_line_and_writes_to_out(copy, tmp_path):
    out = tmp_path / "elsewhere"
    script = (
        f'mount --bind "{copy}" "{copy}" && mount -o remount,bind,ro "{copy}" && '
        f'"$PY" -m bnbench.cli report "{copy}"; echo "rc=$?"; '
        f'"$PY" -m bnbench.cli report "{copy}" --out "{out}"'
    )
    result = in_namespace(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"bnbench: invalid results_dir='{copy}': not writable (Read-only file system); " in (
        result.stderr
    )
    assert "rc=2" in result.stdout
    assert (out / "REPORT.md").exists() and (out / "runs.csv").exists()
    assert (out / "figures" / "convergence.png").exists()
    assert not (copy / "REPORT.md").exists()


def test_report_to_out_keeps_a_results_root_untouched(copy, tmp_path):
    root, out = copy.parent, tmp_path / "out"
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    result = bnbench("report", str(root), "--out", str(out), cwd=tmp_path)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert (out / "REPORT.md").exists() and (out / "s" / "REPORT.md").exists()
    assert "s/REPORT.md" in (out / "REPORT.md").read_text()
    assert f"report: {out / 'REPORT.md'}" in result.stdout
    assert re.search(r"^report \[1/1\] s \(\d+ s\)$", result.stderr, re.M)  # progress per sweep


def test_a_completed_run_with_nan_in_its_metrics_is_not_called_truncated(copy):
    broken = sorted(copy.glob("runs/*"))[0]
    metrics = pd.read_csv(broken / "metrics.csv")
    metrics.loc[0, "val_loss"] = math.nan
    metrics.to_csv(broken / "metrics.csv", index=False)
    result = bnbench("report", str(copy), cwd=copy)
    assert (
        f"warning: skipped {broken}: metrics.csv holds NaN in val_loss at epoch 1 "
        "(the run recorded a non-finite metric)"
    ) in result.stderr
    assert "truncated" not in result.stderr

    text = (broken / "metrics.csv").read_text()  # a row really cut short is still truncated
    (broken / "metrics.csv").write_text(text[: text.rindex(",")])
    result = bnbench("report", str(copy), cwd=copy)
    assert "metrics.csv has a cut-off row (truncated)" in result.stderr


@pytest.mark.parametrize("content", ["{not json", '{"profile": "quick"}'])
def test_report_and_verdict_of_a_claim_sweep_with_an_unreadable_plan_name_it(tmp_path, content):
    root = tmp_path / "quick"
    bnbench("run", *FAST, f"results_dir={root}", "sweep=claim_placement", cwd=tmp_path)
    plan = root / "claim_placement" / "plan.json"
    plan.write_text(content)
    report = bnbench("report", str(root / "claim_placement"), cwd=tmp_path, check=False)
    verdict = bnbench("claims", "verdict", "placement", str(root), cwd=tmp_path, check=False)
    for result in (report, verdict):
        assert "Traceback" not in result.stderr
        assert str(plan) in result.stderr
    assert report.returncode == 0 and verdict.returncode == 3  # no sweep plan: incomplete
    assert f"warning: ignoring unreadable {plan}" in report.stderr  # one line, like the rest


def test_claims_verdict_on_a_missing_directory_says_it_is_missing(tmp_path):
    result = bnbench(
        "claims", "verdict", "higher-lr", str(tmp_path / "nope"), cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert last_line(result) == f"bnbench: no results directory at {tmp_path / 'nope'}"


# --- 4. a full disk --------------------------------------------------------------------------


def test_a_full_disk_stops_the_sweep_in_one_line_keeping_what_it_finished(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f'mount -t tmpfs -o size=200k tmpfs "{disk}" && '
        f'"$PY" -m bnbench.cli run {" ".join(FAST)} results_dir="{disk}" sweep=s '
        f"-m 'seed=range(0,20)'; echo \"rc=$?\"; "
        f'cd "{disk}/s/runs" && for r in *; do echo "run $r $(ls -A $r | tr "\\n" " ")"; done; '
        f'for s in */summary.json; do echo "summary $s $(cat $s | tr -d "\\n ")"; done'
    )
    result = in_namespace(script, tmp_path)
    assert "rc=1" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"bnbench: no space left on {disk} while writing {disk}/s/runs/\w{{12}}/\S+; "
        "the sweep stopped: finished runs are kept, the run in flight is unfinished; "
        "free some space and run the same command again",
        last_line(result),
    ), last_line(result)
    runs = re.findall(r"^run (\w+) (.*)$", result.stdout, re.MULTILINE)
    finished = re.findall(r"^summary (\w+)/summary.json (.*)$", result.stdout, re.MULTILINE)
    assert 1 <= len(finished) < len(runs) < 20  # some finished, the sweep stopped early
    assert all('"status":"completed"' in text for _, text in finished)
    for _, files in runs:  # no partial file, no claim left to block a rerun
        assert ".tmp" not in files and HOLD_FILE not in files


def test_a_full_disk_during_report_is_one_line_and_writes_no_partial_report(tmp_path):
    bnbench("run", *FAST, f"results_dir={tmp_path}", "sweep=s", cwd=tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f'mount -t tmpfs -o size=2m tmpfs "{disk}" && cp -r "{tmp_path}/s" "{disk}/s" && '
        f'free=$(df -k --output=avail "{disk}" | tail -1) && '
        f'dd if=/dev/zero of="{disk}/filler" bs=1k count=$((free - 40)) 2>/dev/null; '
        f'"$PY" -m bnbench.cli report "{disk}/s"; echo "rc=$?"; ls -A "{disk}/s"'
    )
    result = in_namespace(script, tmp_path)
    assert "rc=1" in result.stdout and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch(
        rf"bnbench: no space left on {disk} while writing {disk}/s/\S+; the report was not "
        "updated: free some space and run the same command again",
        last_line(result),
    ), last_line(result)
    listed = result.stdout.split("rc=1", 1)[1].split()
    assert listed == ["runs"]  # no report files, no partial directory: as before the report


# The real command on a disk that is full for multirun.yaml alone: the file opens, and its
# first write fails with ENOSPC, as at 4 KiB free.
FULL_FOR_MULTIRUN_YAML = """
import errno, io, os, sys
real_open = io.open
class Full:
    def __init__(self, f): self.f = f
    def write(self, data): raise OSError(errno.ENOSPC, "No space left on device")
    def __getattr__(self, name): return getattr(self.f, name)
    def __enter__(self): return self
    def __exit__(self, *exc): self.f.close()
def full_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else str(file)
    return Full(f) if "multirun.yaml" in name and set(mode) & set("wax+") else f
io.open = full_open
from bnbench.cli import app
app()
"""


def test_a_full_disk_at_hydras_multirun_yaml_is_one_line_and_leaves_no_empty_file(tmp_path):
    cmd = [sys.executable, "-c", FULL_FOR_MULTIRUN_YAML, "run", *FAST, "-m", "seed=0,1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*cmd, f"results_dir={tmp_path}"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert last_line(result).startswith(
        f"bnbench: no space left on {mount_point(tmp_path)} while writing "
        f"{tmp_path}/default/multirun.yaml; the sweep stopped"
    )
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == ["plan.json"]


# --- 5. values that cannot train -------------------------------------------------------------


def test_summary_json_is_valid_json_when_a_run_diverges_to_nan(tmp_path):
    # weights of scale 1e20 overflow float32 at once: the first loss is NaN (was bare NaN)
    args = [*FAST, f"results_dir={tmp_path}", "model.norm=none", "model.init=normal"]
    bnbench("run", *args, "model.init_scale=1e20", cwd=tmp_path)
    (summary,) = summaries(tmp_path / "default").values()
    assert summary["status"] == "diverged"
    assert summary["first_loss"] is None and summary["final"]["train_loss"] is None


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="refused only where there is no GPU"
)
def test_device_cuda_without_a_gpu_is_refused_before_training(tmp_path):
    result = bnbench(
        "run", *FAST, "device=cuda", f"results_dir={tmp_path}", cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert last_line(result) == (
        "bnbench: invalid device='cuda': no CUDA device on this machine; allowed here: auto | cpu"
    )
    assert not (tmp_path / "default").exists()


# --- 6. planning scales ----------------------------------------------------------------------


def test_seed_copies_have_the_config_and_run_id_that_composing_them_gives():
    overrides = [*TINY, "model.norm=batch,none", "optim.lr=0.01,0.1", "seed=0,1,7"]
    plan = expand(overrides, multirun=True)
    assert len(plan) == 12
    for planned in plan:
        (direct,) = expand([*TINY, *planned.overrides])  # composed alone: no copy
        assert planned.config == direct.config
        assert planned.run_id == run_id(direct.config) == direct.run_id
    seeds = [p.config.seed for p in plan]
    assert sorted(set(seeds)) == [0, 1, 7]
    a, b = plan[0].config, plan[1].config  # copies share no mutable value
    assert a.model is not b.model and a.model.widths is not b.model.widths


def test_planning_ten_thousand_seeds_composes_once_and_reports_progress(monkeypatch):
    from bnbench.sweep import plan as planning

    compositions = []
    compose = planning.compose_overrides
    monkeypatch.setattr(
        planning, "compose_overrides", lambda *a, **k: compositions.append(a) or compose(*a, **k)
    )
    calls = []
    plan = expand([*TINY, "seed=range(0,10000)"], True, progress=lambda *a: calls.append(a))
    assert len(plan) == 10_000 and len({p.run_id for p in plan}) == 10_000
    assert calls[-1] == (10_000, 10_000) and len(calls) == 10_000
    # One Hydra composition for the sweep's parameters and one for its only non-seed setting:
    # the other 9 999 runs are copies (composing each took ~75 ms: 12 minutes for 10 000).
    assert len(compositions) == 2


def test_planning_ten_thousand_distinct_settings_composes_once(monkeypatch):
    from bnbench.sweep import plan as planning

    compositions = []
    compose = planning.compose_overrides
    monkeypatch.setattr(
        planning, "compose_overrides", lambda *a, **k: compositions.append(a) or compose(*a, **k)
    )
    started = time.process_time()
    plan = expand([*TINY, "train.log_every=range(1,10001)"], True)
    assert len({p.run_id for p in plan}) == 10_000
    assert [p.config.train.log_every for p in plan] == list(range(1, 10_001))
    assert len(compositions) == 2  # the sweep's parameters, and the first run
    assert time.process_time() - started < 60  # 68 ms each, 11 minutes, when each composed


def test_planning_parses_each_distinct_override_once(monkeypatch):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bnbench.sweep import plan as planning

    planning._plain_value.cache_clear()
    parsed = []
    parse = OverridesParser.parse_overrides

    def counted(self, overrides):
        parsed.extend(overrides)
        return parse(self, overrides)

    monkeypatch.setattr(OverridesParser, "parse_overrides", counted)
    plan = expand([*TINY, "results_dir=r", "seed=range(0,1000)"], True)
    assert [p.config.seed for p in plan] == list(range(1000))
    # each job's own seed once, the lines every job shares a few times, not once per job:
    # parsing every job's every line was 60% of planning 10,000 seeds
    assert len(parsed) < 1100 and parsed.count("debug=tiny") <= 5  # was 3,000 and 1,000


def test_copies_with_values_set_are_what_composing_gives():
    overrides = [*TINY, "optim.lr=1,0.5", "model.widths=[4],[4,8]", "sweep=7,x", "seed=2,3"]
    plan = expand(overrides, multirun=True)
    assert len(plan) == 16
    for planned in plan:
        (direct,) = expand([*TINY, *planned.overrides])
        assert planned.config == direct.config and planned.run_id == direct.run_id
    assert type(plan[0].config.optim.lr) is float and plan[0].config.sweep == "7"


def test_a_bad_value_in_a_copy_is_refused_as_composing_refuses_it():
    with pytest.raises(ConfigError, match="Error merging override seed=abc"):
        expand([*TINY, "seed=0,abc"], multirun=True)


def test_the_cli_prints_planning_progress_after_a_second(monkeypatch, capsys):
    from bnbench.cli import main as cli

    clock = iter([0.0, 0.5, 1.2, 1.5, 2.4, 3.0])
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    progress = cli.planning_progress()  # reads the clock once
    for done in range(1, 6):
        progress(done, 6)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "planning: 2 of 6 runs composed and checked (1 s)",
        "planning: 4 of 6 runs composed and checked (2 s)",
    ]


# --- 7. smaller ones -------------------------------------------------------------------------


def test_a_run_diverging_on_a_logged_step_writes_that_step_once(tmp_path):
    args = [*FAST, f"results_dir={tmp_path}", "model.norm=none", "optim.lr=20"]
    bnbench("run", *args, "train.log_every=1", cwd=tmp_path)
    (run,) = (tmp_path / "default" / "runs").iterdir()
    steps = pd.read_csv(run / "steps.csv")
    assert strict_json(run / "summary.json")["status"] == "diverged"
    assert steps["step"].is_unique, steps


def test_a_run_with_an_empty_claim_is_taken_over_at_once_and_trained(tmp_path):
    (planned,) = expand([*FAST, f"results_dir={tmp_path}"])
    directory = tmp_path / "default" / "runs" / planned.run_id
    directory.mkdir(parents=True)
    (directory / HOLD_FILE).write_text("")  # its process was killed right after creating it
    bnbench("run", *FAST, f"results_dir={tmp_path}", cwd=tmp_path)
    assert strict_json(directory / "summary.json")["status"] == "completed"
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith(("claim", "."))) == []


def test_a_run_held_by_a_live_process_is_not_done_and_exit_code_1_says_so(tmp_path):
    (planned,) = expand([*FAST, f"results_dir={tmp_path}"])
    directory = tmp_path / "default" / "runs" / planned.run_id
    holder = subprocess.Popen(["sleep", "60"])
    try:
        plant_claim(directory, host=socket.gethostname(), pid=holder.pid)
        result = bnbench("run", *FAST, f"results_dir={tmp_path}", cwd=tmp_path, check=False)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(
        f"bnbench: 1 of 1 planned run(s) not finished: {planned.run_id} (held by "
        f"{socket.gethostname()} pid {holder.pid}, which is training it); to finish them, run "
        "the same command again once the processes holding runs are done: bnbench run "
    ), line


def test_claims_run_exits_1_while_runs_of_its_sweeps_are_left(tmp_path, monkeypatch):
    """As if another process held every run: nothing trained here, so not exit 0."""
    from typer.testing import CliRunner

    import bnbench.sweep.claim_sweeps as claim_sweeps
    from bnbench.cli import app

    monkeypatch.setattr(claim_sweeps, "train_claims", lambda sweeps, jobs, log: None)
    monkeypatch.setattr(claim_sweeps, "report_and_judge", lambda sweeps, claims, console: None)
    args = ["claims", "run", "placement", "--profile", "quick", *TINY, f"results_dir={tmp_path}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert re.search(
        r"(\d+) of \1 planned run\(s\) not finished: \w+ \(not started\)", result.output
    )


@pytest.mark.parametrize("again", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_then_another_signal_while_it_exits_still_exits_130(tmp_path, again):
    """Ctrl-C, then Ctrl-C (or SIGTERM) again every 20 ms until the process is gone: each
    later one lands somewhere in its shutdown (it exited -2 or -15, killed by it, before)."""
    args = [*FAST, "dataset.synthetic_train=2112", "dataset.train_subset=null"]
    args += [
        "train.epochs=5",
        f"results_dir={tmp_path}",
        "sweep=int",
        "-m",
        "model.norm=batch,none",
    ]
    codes = []
    for _ in range(2):
        shutil.rmtree(tmp_path / "int", ignore_errors=True)
        child = subprocess.Popen(
            [sys.executable, "-m", "bnbench.cli", "run", *args],
            cwd=tmp_path,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.time() + 120
        while not list((tmp_path / "int").glob("runs/*/metrics.csv")):
            assert child.poll() is None and time.time() < deadline, child.communicate()
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        deadline = time.time() + 30
        while child.poll() is None and time.time() < deadline:
            time.sleep(0.02)
            try:
                child.send_signal(again)
            except ProcessLookupError:
                break
        _, stderr = child.communicate(timeout=60)
        codes.append(child.returncode)
        assert "to resume, run the same command again" in stderr, stderr
    assert codes == [130, 130]


def test_a_run_that_another_live_process_trains_is_listed_as_running_elsewhere(tmp_path):
    args = [*FAST, f"results_dir={tmp_path}", "-m", "model.norm=batch,none"]
    busy = expand([a for a in args if a != "-m"], multirun=True)[0]
    directory = tmp_path / "default" / "runs" / busy.run_id
    directory.mkdir(parents=True)
    claim = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": "now", "token": "t"}
    (directory / HOLD_FILE).write_text(json.dumps(claim))  # this test process "trains" it

    dry = bnbench("run", "--dry-run", *args, cwd=tmp_path)
    assert re.search(rf"{busy.run_id} .* running elsewhere", dry.stdout), dry.stdout
    result = bnbench("run", *args, cwd=tmp_path, check=False)  # trains the other, skips this
    assert result.returncode == 1  # not done while it is held
    table = result.stdout[result.stdout.index("┏") :]
    assert re.search(rf"{busy.run_id} .* running elsewhere", table), table
    assert " new " not in table


# --- 8. what reproducibility covers ----------------------------------------------------------


def test_same_config_threads_and_memory_format_give_identical_metrics(tmp_path):
    """The documented promise: bit-for-bit repeats on CPU for the same threads and layout."""
    args = [*TINY, "threads=2", "train.channels_last=false", "train.epochs=2", "sweep=r"]
    for copy in ("a", "b"):
        bnbench("run", *args, f"results_dir={tmp_path / copy}", cwd=tmp_path)
    (a,), (b,) = ((tmp_path / c / "r" / "runs").iterdir() for c in ("a", "b"))
    same_metrics(a, b)
    assert strict_json(a / "summary.json")["threads"] == 2


def test_report_flags_a_sweep_whose_runs_mixed_threads_or_memory_format(tmp_path):
    common = [*TINY, f"results_dir={tmp_path}", "sweep=mix"]
    bnbench("run", *common, "model.norm=batch", "threads=1", cwd=tmp_path)
    bnbench(
        "run", *common, "model.norm=none", "threads=2", "train.channels_last=false", cwd=tmp_path
    )
    result = bnbench("report", str(tmp_path / "mix"), cwd=tmp_path)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: the runs mixed threads: 1 (1 runs), 2 (1 runs); metrics repeat bit for bit "
        "only with the same device, threads and memory format, so compare them with care",
        "warning: the runs mixed train.channels_last: False (1 runs), True (1 runs); metrics "
        "repeat bit for bit only with the same device, threads and memory format, so compare "
        "them with care",
    ]
    report = (tmp_path / "mix" / "REPORT.md").read_text()
    assert "Warning: the runs mixed threads: 1 (1 runs), 2 (1 runs)" in report
    assert "Warning: the runs mixed train.channels_last" in report


# --- 9. nothing left behind by a kill ---------------------------------------------------------


def test_a_finished_runs_leftovers_from_a_kill_are_removed_by_the_next_call(tmp_path):
    args = ["run", *FAST, f"results_dir={tmp_path}"]
    bnbench(*args, cwd=tmp_path)
    (run,) = (tmp_path / "default" / "runs").iterdir()
    # killed after its summary.json: the checkpoint, its hold, a takeover and a temp file stay
    (run / "checkpoint.pt").write_bytes(b"state")
    plant_claim(run, host=socket.gethostname(), pid=dead_pid())
    (run / f"{HOLD_FILE}.takeover").write_text(json.dumps({"host": "h", "pid": 1}))
    os.utime(run / f"{HOLD_FILE}.takeover", (time.time() - 120, time.time() - 120))
    (run / ".metrics.csv.abc.tmp").write_text("epoch")
    bnbench(*args, cwd=tmp_path)
    left = [p.name for p in run.iterdir() if p.name.startswith(("checkpoint", "claim", "."))]
    assert left == []


def test_a_summary_json_that_is_a_directory_is_moved_aside_and_the_run_trained(tmp_path):
    (planned,) = expand([*FAST, f"results_dir={tmp_path}"])
    directory = tmp_path / "default" / "runs" / planned.run_id
    (directory / "summary.json").mkdir(parents=True)
    result = bnbench("run", *FAST, f"results_dir={tmp_path}", cwd=tmp_path)
    assert "summary.json is a directory, not a file; moved it to summary.json.corrupt-" in (
        result.stderr
    )
    assert strict_json(directory / "summary.json")["status"] == "completed"


def test_joblib_workers_stop_training_when_their_parent_is_killed(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    args = [*FAST, "dataset.synthetic_train=4096", "train.epochs=200", f"results_dir={tmp_path}"]
    args += ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.norm=batch,none"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "bnbench.cli", "run", *args],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / "default" / "runs"
    deadline = time.time() + 180
    while len(list(runs.glob("*/metrics.csv"))) < 2:  # both workers are training
        assert parent.poll() is None and time.time() < deadline
        time.sleep(0.1)
    workers = [json.loads(c.read_text())["pid"] for c in runs.glob(f"*/{HOLD_FILE}")]
    parent.kill()
    parent.wait()
    deadline = time.time() + 60
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "orphaned workers train on"
    statuses = [strict_json(s)["status"] for s in runs.glob("*/summary.json")]
    assert set(statuses) <= {"interrupted"}  # one SIGTERMed mid-step records it; none finished


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
