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
from conftest import TINY, bnbench

from bnbench.identity import run_id
from bnbench.plan import expand
from bnbench.run_claim import describe_claim
from bnbench.store import CLAIM_FILE, METRIC_COLUMNS, write_json

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
        assert ".tmp" not in files and CLAIM_FILE not in files


# --- 5. values that cannot train -------------------------------------------------------------


def test_summary_json_is_valid_json_when_a_run_diverges_to_nan(tmp_path):
    # weights of scale 1e20 overflow float32 at once: the first loss is NaN (was bare NaN)
    args = [*FAST, f"results_dir={tmp_path}", "model.norm=none", "model.init=normal"]
    bnbench("run", *args, "model.init_scale=1e20", cwd=tmp_path)
    (summary,) = summaries(tmp_path / "default").values()
    assert summary["status"] == "diverged"
    assert summary["first_loss"] is None and summary["final"]["train_loss"] is None


def test_write_json_writes_non_finite_numbers_as_null(tmp_path):
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": "nan", "e": 2.5}
    write_json(tmp_path / "x.json", data)
    assert strict_json(tmp_path / "x.json") == {
        "a": None,
        "b": [1.0, None, {"c": None}],
        "d": "nan",
        "e": 2.5,
    }


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
    from bnbench import plan as planning

    compositions = []
    compose = planning._compose
    monkeypatch.setattr(
        planning, "_compose", lambda *a, **k: compositions.append(a) or compose(*a, **k)
    )
    calls = []
    plan = expand([*TINY, "seed=range(0,10000)"], True, progress=lambda *a: calls.append(a))
    assert len(plan) == 10_000 and len({p.run_id for p in plan}) == 10_000
    assert calls[-1] == (10_000, 10_000) and len(calls) == 10_000
    # One Hydra composition for the sweep's parameters and one for its only non-seed setting:
    # the other 9 999 runs are copies (composing each took ~75 ms: 12 minutes for 10 000).
    assert len(compositions) == 2


def test_the_cli_prints_planning_progress_after_a_second(monkeypatch, capsys):
    from bnbench import cli

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


@pytest.mark.parametrize("content", ["", "garbage", "[1]"])
def test_an_unreadable_claim_is_described_with_when_it_is_taken_over(tmp_path, content):
    (tmp_path / CLAIM_FILE).write_text(content)
    when = time.strftime("%H:%M:%S", time.gmtime(time.time() + 600))
    text = describe_claim(tmp_path)
    assert "None" not in text
    assert text.startswith(f"its {CLAIM_FILE} is unreadable (empty or not a claim)")
    assert text[-12:-4] in {when, time.strftime("%H:%M:%S", time.gmtime(time.time() + 599))}
    (tmp_path / CLAIM_FILE).write_text(json.dumps({"host": "h", "pid": 7}))
    assert describe_claim(tmp_path) == "claimed by h pid 7"


def test_a_run_with_a_garbage_claim_is_skipped_saying_why(tmp_path):
    (planned,) = expand([*FAST, f"results_dir={tmp_path}"])
    directory = tmp_path / "default" / "runs" / planned.run_id
    directory.mkdir(parents=True)
    (directory / CLAIM_FILE).write_text("")
    result = bnbench("run", *FAST, f"results_dir={tmp_path}", cwd=tmp_path)
    assert "claimed by None" not in result.stderr
    assert "claim.json is unreadable (empty or not a claim); it is taken over" in result.stderr


def test_ctrl_c_pressed_again_while_it_exits_still_exits_130(tmp_path):
    """Ctrl-C, then Ctrl-C again every 20 ms until the process is gone: each later one
    lands somewhere in its shutdown (it exited -2, killed by SIGINT, before the fix)."""
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
                child.send_signal(signal.SIGINT)
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
    (directory / CLAIM_FILE).write_text(json.dumps(claim))  # this test process "trains" it

    dry = bnbench("run", "--dry-run", *args, cwd=tmp_path)
    assert re.search(rf"{busy.run_id} .* running elsewhere", dry.stdout), dry.stdout
    result = bnbench("run", *args, cwd=tmp_path)  # trains the other run, skips this one
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
    columns = [c for c in METRIC_COLUMNS if c != "epoch_time_s"]
    pd.testing.assert_frame_equal(
        pd.read_csv(a / "metrics.csv")[columns],
        pd.read_csv(b / "metrics.csv")[columns],
        check_exact=True,
    )
    assert (a / "steps.csv").read_text() == (b / "steps.csv").read_text()
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
