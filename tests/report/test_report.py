"""Aggregate, figures and report over a results dir made by a few tiny real runs."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import bnbench, dead_pid, tiny_config

from bnbench.analysis.run_stats import summarize
from bnbench.analysis.tables import load_curves, load_runs
from bnbench.config.schema import Config
from bnbench.report import render
from bnbench.report.build import build_report
from bnbench.report.figures import figure_specs
from bnbench.report.plots import plot_dropout, plot_factor
from bnbench.report.result import NoRunsError, headline_text
from bnbench.report.style import norm_label
from bnbench.store.files import DiskFull, disk_full
from bnbench.store.planfile import Plan, write_plan
from bnbench.store.reader import SkippedRunWarning, find_run_dirs
from tests.claims.test_claims import placement_sweep, write_run

EPOCHS = 2


def tiny(results: Path, norm: str, lr: float, seed: int) -> Config:
    return tiny_config(results, model__norm=norm, optim__lr=lr, seed=seed, train__epochs=EPOCHS)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """norm {batch, none} x lr {0.01, 0.1} x seed {0, 1}: 8 real runs, about a second each."""
    from bnbench.train.runner import execute

    results = tmp_path_factory.mktemp("results")
    for norm in ("batch", "none"):
        for lr in (0.01, 0.1):
            for seed in (0, 1):
                assert execute(tiny(results, norm, lr, seed)) == "completed"
    return results / "t"


@pytest.fixture
def copy(sweep: Path, tmp_path: Path) -> Path:
    """A private copy of the sweep, free to corrupt."""
    return Path(shutil.copytree(sweep, tmp_path / "t"))


def test_report_writes_tables_figures_and_both_reports(copy: Path):
    result = build_report(copy)
    assert (result.n_runs, result.skipped) == (8, [])
    runs, curves = pd.read_csv(copy / "runs.csv"), pd.read_csv(copy / "curves.csv")
    assert len(runs) == 8 and len(curves) == 8 * EPOCHS
    for name in ("convergence", "generalization", "lr_sensitivity"):
        for suffix in ("png", "svg"):
            assert (copy / "figures" / f"{name}.{suffix}").stat().st_size > 0
    assert not (copy / "figures" / "dropout.png").exists()  # dropout was not swept
    assert set(result.written) >= {copy / "REPORT.md", copy / "report.html"}

    markdown = (copy / "REPORT.md").read_text()
    for text in (
        "LR (optim.lr): 0.01, 0.1",
        "Headline: accuracy by norm and setting",
        "train - test (pts; train-mode accuracy over the last epoch)",
        "batch - none",
        "p (t-test or bootstrap, Holm)",
    ):
        assert text in markdown
    assert "figures/lr_sensitivity.png" in markdown
    page = (copy / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="figures/' not in page

    headline = headline_text(result)
    assert norm_label("batch") in headline and norm_label("none") in headline
    assert "val acc (%)" in headline


def test_figures_drawn_by_two_processes_are_the_ones_one_process_draws(copy: Path, tmp_path):
    """A sweep reported alone shares its figures out over the cores: same files, same bytes."""
    build_report(copy, tmp_path / "one", workers=1)
    result = build_report(copy, tmp_path / "two", workers=2)
    one = sorted(p.name for p in (tmp_path / "one" / "figures").iterdir())
    assert one == sorted(p.name for p in result.figures) and len(one) >= 6
    for name in one:
        drawn = (tmp_path / "two" / "figures" / name).read_bytes()
        assert drawn == (tmp_path / "one" / "figures" / name).read_bytes(), name


def test_corrupt_and_unfinished_runs_are_skipped_by_name(copy: Path):
    truncated, unfinished = find_run_dirs(copy)[:2]
    text = (truncated / "metrics.csv").read_text()
    (truncated / "metrics.csv").write_text(text[: len(text) - 25])  # cut inside the last row
    (unfinished / "summary.json").unlink()

    with pytest.warns(SkippedRunWarning) as caught:
        result = build_report(copy)
    messages = " ".join(str(w.message) for w in caught)
    assert str(truncated) in messages and str(unfinished) in messages
    assert result.n_runs == 6
    assert {path for path, _ in result.skipped} == {truncated, unfinished}
    assert len(pd.read_csv(copy / "runs.csv")) == 6
    assert (copy / "figures" / "lr_sensitivity.png").exists()
    markdown = (copy / "REPORT.md").read_text()
    assert (
        "Skipped runs" in markdown and truncated.name in markdown and "no summary.json" in markdown
    )


def test_load_runs_and_curves_from_runs_dir_sweep_or_root(sweep: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedRunWarning)
        from_runs = load_runs(sweep / "runs")
        from_root = load_runs(sweep.parent)
    assert len(from_runs) == len(from_root) == 8
    for column in ("run_id", "model.norm", "optim.lr", "train.batch_size", "seed", "status"):
        assert column in from_runs
    for column in ("val_acc", "test_acc", "grad_norm", "best_val_acc", "wall_time_s"):
        assert from_runs[column].notna().all()
    assert from_runs["model.widths"].unique().tolist() == [(8, 16)]  # parsed, hashable
    assert from_runs["val_acc_scored"].tolist() == from_runs["val_acc"].tolist()

    curves = load_curves(sweep)
    assert {"run_id", "model.norm", "optim.lr", "seed", "epoch", "elapsed_s", "status"} <= set(
        curves.columns
    )
    for _, run in curves.groupby("run_id"):
        assert run["epoch"].tolist() == list(range(1, EPOCHS + 1))
        np.testing.assert_allclose(run["elapsed_s"], run["epoch_time_s"].cumsum())


def test_lr_figure_has_log_axis_and_one_line_per_norm(sweep: Path):
    fig = plot_factor(load_runs(sweep), "optim.lr")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labelled = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labelled == [norm_label("batch"), norm_label("none")]
    assert "%" in ax.get_ylabel() and "learning rate" in ax.get_xlabel()
    assert fig.get_suptitle()


def test_diverged_run_is_reported_at_chance(tmp_path: Path):
    from bnbench.train.runner import execute

    assert execute(tiny(tmp_path, "none", 50.0, 0)) == "diverged"
    assert execute(tiny(tmp_path, "batch", 0.05, 0)) == "completed"
    runs = load_runs(tmp_path)
    down = runs[runs["status"].eq("diverged")].iloc[0]
    assert np.isnan(down["val_acc"]) and down["chance_acc"] == 0.25  # synthetic: 4 classes
    assert down["val_acc_scored"] == down["test_acc_scored"] == 0.25  # as the report scores it
    table = summarize(runs, ["val_acc"], by=["model.norm"]).set_index("model.norm")
    assert table.loc["none", "val_acc_mean"] == 0.25 and table.loc["none", "n_diverged"] == 1

    result = build_report(tmp_path / "t")
    assert result.n_runs == 2
    assert "| no norm (none) | 50 | 1 | 1 | 25.0 |" in (tmp_path / "t" / "REPORT.md").read_text()


def fake_runs(**grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A runs and curves table with the given factors swept, without training anything."""
    index = pd.MultiIndex.from_product(
        [["batch", "none"], *grid.values(), [0, 1, 2]], names=["model.norm", *grid, "seed"]
    )
    runs = index.to_frame(index=False)
    rng = np.random.default_rng(0)
    runs["run_id"] = [f"r{i}" for i in range(len(runs))]
    runs["status"] = "completed"
    runs["chance_acc"] = 0.1
    for column in ("train_acc", "val_acc", "test_acc"):
        runs[column] = rng.uniform(0.5, 0.9, len(runs))
    curves = runs[["run_id", "model.norm", "seed", "status"]].merge(
        pd.DataFrame({"epoch": [1, 2]}), how="cross"
    )
    curves["train_loss"] = 1.0 / curves["epoch"]
    curves["val_acc"] = 0.4 * curves["epoch"]
    curves["elapsed_s"] = 1.5 * curves["epoch"]
    return runs, curves


@pytest.mark.parametrize(
    "factor, values, figure",
    [
        ("model.dropout", [0.0, 0.2, 0.5], "dropout"),
        ("train.batch_size", [16, 64, 256], "batch_size"),
        ("model.placement", ["pre", "post"], "placement"),
        ("model.init_scale", [0.01, 1.0], "init_scale_sensitivity"),
    ],
)
def test_one_figure_per_swept_factor(factor, values, figure):
    runs, curves = fake_runs(**{factor: values})
    names = [spec[0] for spec in figure_specs(runs, curves)]
    assert names == ["convergence", "generalization", figure]
    fig = figure_specs(runs, curves)[2][3]()  # draw it
    assert fig.get_suptitle()


def test_dropout_heatmap_writes_values_in_cells():
    runs, _ = fake_runs(**{"model.dropout": [0.0, 0.2, 0.5]})
    ax = plot_dropout(runs).axes[0]
    assert len(ax.texts) == 2 * 3  # norm x dropout rate
    mean = 100 * runs[runs["model.norm"].eq("batch") & runs["model.dropout"].eq(0.2)]["test_acc"]
    assert any(t.get_text().startswith(f"{mean.mean():.1f}") for t in ax.texts)


def test_batch_size_axis_is_log2():
    runs, _ = fake_runs(**{"train.batch_size": [16, 64, 256]})
    ax = plot_factor(runs, "train.batch_size").axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2


def test_an_lr_scaled_with_the_batch_does_not_split_the_batch_size_figure():
    runs, _ = fake_runs(**{"train.batch_size": [2, 8, 128]})
    runs["optim.lr"] = 0.05 * runs["train.batch_size"] / 128
    # one panel with all three batch sizes, not one single-point panel per LR
    assert len(plot_factor(runs, "train.batch_size").axes) == 1
    runs["optim.lr"] = np.where(runs["seed"].eq(0), 0.1, 0.01)  # an independent factor is
    assert len(plot_factor(runs, "train.batch_size").axes) == 2  # still a panel each


def test_a_factor_figure_leaves_out_panels_where_the_factor_does_not_vary():
    """Ghost batches of 2 and 8 only at batch 128 (claim 7): the ghost figure has the one
    panel where they vary; an LR one to one with the batch size gets no figure of its own."""
    runs, curves = fake_runs(**{"train.batch_size": [2, 8, 128]})
    runs["model.ghost_batch_size"] = np.nan
    runs["optim.lr"] = 0.05 * runs["train.batch_size"] / 128
    ghosts = runs[runs["train.batch_size"].eq(128)].copy()
    ghosts = pd.concat([ghosts.assign(**{"model.ghost_batch_size": g}) for g in (2.0, 8.0)])
    runs = pd.concat([runs, ghosts], ignore_index=True)
    runs["run_id"] = [f"r{i}" for i in range(len(runs))]
    names = [spec[0] for spec in figure_specs(runs, curves)]
    assert names == ["convergence", "generalization", "batch_size", "factor_model_ghost_batch_size"]
    fig = plot_factor(runs, "model.ghost_batch_size")
    assert [ax.get_title() for ax in fig.axes] == ["batch size: 128, LR: 0.05"]

    constant = fake_runs(**{"model.init": ["kaiming_normal", "orthogonal"]})[0]
    constant = constant.assign(**{"model.init_scale": 1.0})
    constant = pd.concat(
        [
            constant,
            constant[constant["model.init"].eq("kaiming_normal")].assign(
                **{"model.init_scale": 10.0}
            ),
        ],
        ignore_index=True,
    )
    assert len(plot_factor(constant, "model.init").axes) == 1  # init_scale=1 only
    assert len(plot_factor(constant, "model.init_scale").axes) == 1  # kaiming only


def links_in(page: Path) -> list[str]:
    """Every href and src of an HTML page, but the embedded (data:) images."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(v for k, v in attrs if k in ("href", "src") and v)

    Parser().feed(page.read_text())
    return [link for link in found if not link.startswith("data:")]


def test_every_relative_link_of_every_report_html_leads_to_a_file(copy: Path):
    root = copy.parent
    build_report(root)
    pages = sorted(root.glob("**/report.html"))
    assert [p.relative_to(root).as_posix() for p in pages] == ["report.html", "t/report.html"]
    for page in pages:
        links = links_in(page)
        assert links, f"{page} links nowhere"
        for link in links:
            assert "://" not in link and not link.startswith("/"), f"{page}: {link} not relative"
            assert (page.parent / link.split("#")[0]).is_file(), f"{page}: {link} leads nowhere"
    assert "t/report.html" in links_in(root / "report.html")
    sweep_links = links_in(root / "t" / "report.html")
    assert "../report.html" in sweep_links
    assert any(link.endswith(".svg") for link in sweep_links)
    assert any(link.endswith(".png") for link in sweep_links)


def test_load_runs_refuses_a_missing_directory_and_warns_on_an_empty_one(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no results directory at /nonexistent"):
        load_runs("/nonexistent")
    with pytest.raises(FileNotFoundError):
        load_curves(tmp_path / "missing")
    with pytest.warns(UserWarning, match=f"no finished runs under {tmp_path}"):
        assert load_runs(tmp_path).empty


def test_load_runs_documents_scored_and_bookkeeping_columns():
    import bnbench

    for word in ("val_acc_scored", "chance", "tuples", "results_dir", "progress", "threads"):
        assert word in bnbench.load_runs.__doc__


def test_no_runs_is_a_clear_error(tmp_path: Path):
    with pytest.raises(NoRunsError, match="no results directory"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoRunsError, match="no finished runs"):
        build_report(tmp_path / "empty")


def test_reporting_never_imports_torch():
    code = "import sys, bnbench.report.build; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_claim_report_names_the_arms_by_what_differs_and_shows_no_empty_section(tmp_path):
    """Claim 9's sweep by hand (every arm BN, post vs pre, each placement at its best LR,
    which is the same LR): the verdict in REPORT.md, report.html and verdicts.csv names the
    arms by their placement, not by the LR they share; the sweep has no no-norm runs, so the
    report has no paired-effect section to say so."""
    root = tmp_path / "results"
    ids = placement_sweep(root, seeds=6, experiment="claim_placement", activations=("relu",))
    write_plan(root / "claim_placement", Plan("full", [], ids))
    bnbench("report", str(root), cwd=tmp_path)
    markdown = (root / "claim_placement" / "REPORT.md").read_text()
    page = (root / "claim_placement" / "report.html").read_text()
    cells = pd.read_csv(root / "verdicts.csv")["cell"].dropna().tolist()
    assert "activation relu (BN placement post vs pre, LR 0.1 in both)" in cells
    for text in (markdown, page, "\n".join(cells)):
        assert "BN placement post vs pre" in text
        assert "lr=0.1 vs lr=0.1" not in text and "LR 0.1 vs 0.1" not in text
    for text in (markdown, page):
        assert "Paired effect" not in text and "No pairs" not in text
        assert "Headline: accuracy by norm and setting" in text  # the sections with content
        assert "Figures" in text


def test_fixed_settings_are_spelled_as_overrides_and_a_tie_is_not_negative():
    from bnbench.report.sweep import swept_items
    from bnbench.report.tables import fmt_diff

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "status": "completed",
            "chance_acc": 0.1,
            "model.norm": ["batch", "none"],
            "seed": 0,
            "dataset.name": "fashion_mnist",
            "model.init": "kaiming_normal",
        }
    )
    fixed = [item for item in swept_items(runs, []) if item.startswith("fixed: ")]
    assert fixed == ["fixed: dataset.name=fashion_mnist, model.init=kaiming_normal"]  # typable
    assert fmt_diff(-0.0004, np.nan, np.nan) == "0.0"  # BN 80.90% vs no-BN 80.95%: a tie
    assert fmt_diff(0.021, 0.005, 0.037) == "+2.1 [+0.5, +3.7]"
    assert fmt_diff(-0.021, -0.03, -0.0004) == "-2.1 [-3.0, 0.0]"  # no sign it does not have


# --- a report is written whole, or not at all ----------------------------------------------


def report_files(directory: Path) -> dict[Path, bytes]:
    """Every file of a sweep's report (tables, figures, pages), by path inside the sweep."""
    return {
        p.relative_to(directory): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file()
        and "runs" not in p.relative_to(directory).parts[:1]
        and p.name != "plan.json"
    }


def test_nothing_is_written_where_there_is_nothing_to_report(copy: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    (empty / "runs" / "abc").mkdir(parents=True)  # a sweep just launched
    with pytest.raises(NoRunsError, match="no finished runs"):
        build_report(empty)
    assert [p.name for p in empty.iterdir()] == ["runs"]  # no empty runs.csv, curves.csv
    root = tmp_path / "root"
    root.mkdir()
    shutil.move(empty, root / "empty")
    with pytest.raises(NoRunsError, match="no finished runs"):
        build_report(root)
    assert sorted(p.name for p in root.rglob("*")) == ["abc", "empty", "runs"]
    shutil.move(copy, root / "t")  # beside a sweep with runs, it stops nothing
    result = build_report(root)
    assert result.n_runs == 8 and (root / "REPORT.md").is_file()
    assert f"no finished runs under {root / 'empty'}; no report written for it" in result.warnings
    assert [p.name for p in (root / "empty").iterdir()] == ["runs"]


def test_a_full_disk_mid_report_leaves_the_old_report_whole(copy: Path, monkeypatch):
    build_report(copy)
    before = report_files(copy)
    shutil.rmtree(next((copy / "runs").iterdir()))  # the next report's runs.csv differs
    real = render.write_atomic

    def full_at_the_html_page(path: Path, text: str) -> None:
        if path.name == "report.html":  # the last file written: all the others are new
            raise disk_full(path)
        real(path, text)

    monkeypatch.setattr(render, "write_atomic", full_at_the_html_page)
    with pytest.raises(DiskFull):
        build_report(copy)
    assert report_files(copy) == before  # not a new runs.csv beside an old REPORT.md
    assert not list(copy.glob(".report-*"))


def test_a_partial_report_left_by_a_dead_process_is_removed_by_the_next(copy: Path):
    host = socket.gethostname()
    dead = copy / f".report-{host}-{dead_pid()}-0123abcd.partial"
    live = copy / f".report-{host}-{os.getpid()}-4567cdef.partial"  # a report being built
    for stage in (dead, live):
        (stage / "figures").mkdir(parents=True)
        (stage / "runs.csv").write_text("cut")
    build_report(copy)
    assert not dead.exists() and (live / "runs.csv").is_file()


def markdown_tables(markdown: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows) of every table of a REPORT.md, each row its cells."""

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split(" | ")]

    tables = []
    for block in markdown.split("\n\n"):
        lines = block.splitlines()
        if len(lines) > 1 and lines[0].startswith("| ") and lines[1].startswith("| ---"):
            tables.append((cells(lines[0]), [cells(line) for line in lines[2:]]))
    return tables


def test_every_p_on_a_claim_page_reads_alike_and_names_its_test(tmp_path):
    """A claim's verdict (exact sign-flip test) and the sweep's paired effects (t-test) on
    one page: every p in one format, each p column naming its test; and an effect that
    rounds to zero is written 0.0, without a sign that contradicts it."""
    root = tmp_path / "results"
    ids = placement_sweep(root, seeds=6, experiment="claim_placement", activations=("relu",))
    write_plan(root / "claim_placement", Plan("full", [], ids))
    for seed in range(6):  # no-norm runs beside BN pre: a paired-effect table
        for lr, test in ((0.1, 0.3 + 0.001 * seed), (1.0, 0.5004 + 0.00001 * seed)):
            config = {"model.placement": "pre", "optim.lr": lr, "seed": seed}
            config |= {
                "model.activation": "relu",
                "model.norm": "none",
                "dataset.name": "synthetic",
            }
            write_run(root / "claim_placement", f"none-{lr}-{seed}", config, 0.5, test)
    build_report(root / "claim_placement", workers=1)
    markdown = (root / "claim_placement" / "REPORT.md").read_text()
    one_format = re.compile(r"(<0\.001|[01]\.\d{3}|-)")
    tests = set()
    for header, rows in markdown_tables(markdown):
        for i, column in enumerate(header):
            if column == "p" or column.startswith("p "):
                tests.add("sign-flip" if "sign-flip" in column else column)
                assert all(one_format.fullmatch(row[i]) for row in rows), (column, rows)
    assert tests == {"sign-flip", "p (t-test or bootstrap)", "p (t-test or bootstrap, Holm)"}
    said = re.findall(r"\bp=([^,) ]+)", markdown)
    assert said and all(one_format.fullmatch(p) for p in said), said
    page = (root / "claim_placement" / "report.html").read_text()
    assert "&lt;0.001" in page and not re.search(r"\de-\d", markdown + page)
    effects = [
        row for header, rows in markdown_tables(markdown) if "test" in header for row in rows
    ]
    assert ["0.0 [0.0, 0.0]"] == [r[5] for r in effects if r[2] == "1" and r[3] == "test_acc"]
    assert not re.search(r"[+-]0\.0\b", markdown)
