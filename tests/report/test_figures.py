"""How figures look: sizes within bounds, facets and labels in words, the claim figure's
primary in a panel of its own, and the overview of every claim's primary effect."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnbench.report.plots_claim import plot_claim, plot_overview
from bnbench.report.style import MAX_PX, cell_label, fmt_value, save


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


def test_no_figure_is_saved_larger_than_the_bound(tmp_path: Path):
    for size in [(24.0, 6.0), (6.0, 40.0), (8.0, 5.0)]:
        fig = Figure(figsize=size)
        fig.subplots().plot([0, 1], [0, 1])
        save(fig, tmp_path / "f.png", tmp_path / "f.svg")
        width, height = png_size(tmp_path / "f.png")
        assert width <= MAX_PX[0] and height <= MAX_PX[1], (size, width, height)
    assert png_size(tmp_path / "f.png") == (1600, 1000)  # a small figure keeps 200 dpi


def test_facets_and_values_read_in_words():
    columns = ["model.head_norm", "model.groups", "optim.lr", "train.batch_size"]
    assert cell_label(columns, (False, None, 0.00078125, 2)) == (
        "head BN: no, LR: 0.00078125, batch size: 2"
    )
    assert cell_label(["model.norm"], ("none",)) == "norm: none"  # a value, not a missing one
    assert fmt_value(np.True_) == "yes" and fmt_value("before_norm") == "before norm"
    assert fmt_value(float("nan")) == "none"


def verdict(number: int, name: str, outcome: str, mean: float, delta: float, unit: str):
    primary = {
        "label": f"primary of {name}",
        "mean": mean,
        "lo": mean - 1,
        "hi": mean + 1,
        "delta": delta,
        "unit": unit,
        "outcome": outcome,
        "direction": "higher",
    }
    secondary = pd.DataFrame(
        [
            {**primary, "label": "a secondary", "cell": "a", "outcome_holm": "inconclusive"},
            {
                **primary,
                "cell": "b",
                "mean": -13.0,
                "lo": -13.2,
                "hi": -12.9,
                "outcome_holm": "supported",
            },
        ]
    ).assign(name=["a secondary", "b"])
    claim = SimpleNamespace(number=number, name=name)
    return SimpleNamespace(claim=claim, status=outcome, primary=primary, secondary=secondary)


def test_a_claim_figure_gives_the_primary_its_own_panel_and_axis():
    """A secondary at -13 decades beside a primary at +0.24 shares no axis with it."""
    fig = plot_claim(verdict(6, "gradient-flow", "contradicted", 0.24, 0.5, "decades"), "t")
    primary, secondaries = fig.axes[0], fig.axes[1]
    assert len(primary.get_yticks()) == 1
    assert primary.get_xlim()[1] < 2 < 13 < -secondaries.get_xlim()[0]


def test_the_overview_draws_each_primary_in_its_unit_in_claim_order():
    verdicts = [
        verdict(1, "faster-convergence", "supported", -0.7, 0.32, "log2 steps"),
        verdict(2, "higher-lr", "supported", 1.1, 0.25, "decades"),
        verdict(8, "test-time-stats", "supported", -37.4, 1.0, "points"),
    ]
    fig = plot_overview(verdicts)
    labels = [ax.get_yticklabels()[0].get_text() for ax in fig.axes]
    assert labels == ["1. faster-convergence", "2. higher-lr", "8. test-time-stats"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["log2 steps", "decades", "points"]
    low, high = fig.axes[2].get_xlim()
    assert low < -38.4 and high > 0 and low > -60  # fitted to the effect, not to one scale
    assert fig.axes[0].get_xlim()[1] < 3


def test_a_sparse_dropout_design_is_drawn_as_points_not_an_empty_heatmap():
    """Claim 10's design: dropout rates only with BN, in one of four settings of another
    factor; a dense norm x rate grid keeps its heatmap."""
    from test_report import fake_runs

    from bnbench.report.figures import figure_specs
    from bnbench.report.plots import plot_factor

    dense_runs, curves = fake_runs(**{"model.dropout": [0.0, 0.2, 0.5]})
    assert "dropout" in [name for name, *_ in figure_specs(dense_runs, curves)]
    runs, curves = fake_runs(**{"model.head_dropout": [0.0, 0.1, 0.2, 0.3]})
    runs["model.dropout"] = 0.0
    extra = runs[runs["model.norm"].eq("batch") & runs["model.head_dropout"].eq(0.0)]
    runs = pd.concat([runs, extra.assign(**{"model.dropout": 0.3})], ignore_index=True)
    runs["run_id"] = [f"r{i}" for i in range(len(runs))]
    specs = {name: build for name, _, _, build in figure_specs(runs, curves)}
    fig = specs["dropout"]()
    assert not fig.axes[0].images  # points, not a heatmap
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["head dropout: 0"]
    assert len(plot_factor(runs, "model.dropout").axes) == 1


def test_the_y_range_fits_the_data_and_keeps_chance_only_where_it_lies():
    from test_report import fake_runs

    from bnbench.report.plots import plot_factor

    runs, _ = fake_runs(**{"optim.lr": [0.01, 0.1]})
    runs["val_acc"] = 0.8 + 0.01 * runs["seed"]
    ax = plot_factor(runs, "optim.lr").axes[0]
    assert ax.get_ylim()[0] > 40  # accuracies of 50-90%: the axis does not reach down to 10
    assert not [line for line in ax.lines if line.get_linestyle() == ":"]
    legend = [t.get_text() for t in ax.figure.legends[0].get_texts()]
    assert "chance accuracy" not in legend  # the legend names only what is drawn
    runs["chance_acc"] = 0.805  # inside the data's range: drawn
    ax = plot_factor(runs, "optim.lr").axes[0]
    assert [line for line in ax.lines if line.get_linestyle() == ":"]


def test_convergence_compares_what_differs_between_the_arms():
    """Every run BN, placement swept (claim 9): one line per placement, not one BN line."""
    from test_report import fake_runs

    from bnbench.report.plots_convergence import plot_convergence

    runs, curves = fake_runs(**{"model.placement": ["pre", "post"], "optim.lr": [0.01, 0.1]})
    runs, curves = runs[runs["model.norm"].eq("batch")], curves[curves["model.norm"].eq("batch")]
    fig = plot_convergence(runs, curves)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [label.split(" at ")[0] for label in labels[:2]] == [
        "BN placement: pre",
        "BN placement: post",
    ]
    # each arm's LR in its label, or where the arms share it, once in the title
    shared = "LR: " in fig.get_suptitle()
    assert all((" at LR: " in label) != shared for label in labels[:2])
    assert len(fig.axes[0].lines) == 2 and "each BN placement" in fig.get_suptitle()
    runs, curves = fake_runs(**{"optim.lr": [0.01, 0.1]})  # the norms differ: they are the arms
    fig = plot_convergence(runs, curves)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0].startswith("BN (batch)") and "each norm" in fig.get_suptitle()


def test_convergence_shows_the_runs_a_claims_primary_compares_at_the_lr_it_chose():
    """Claim 1 chooses each arm's LR on final train loss: the figure shows that LR, where
    validation accuracy (the figure's own rule elsewhere) would choose the other one."""
    from test_report import fake_runs

    from bnbench.claims.registry import get_claim
    from bnbench.report.figures import figure_specs, primary_choice
    from bnbench.report.plots_convergence import plot_convergence

    runs, curves = fake_runs(**{"optim.lr": [0.01, 0.1]})
    low = runs["optim.lr"].eq(0.01)
    runs["val_acc"] = np.where(low, 0.6, 0.8)  # best on validation: 0.1 for both arms
    bn = runs["model.norm"].eq("batch")
    runs["train_loss"] = np.where(low == bn, 0.2, 0.5)  # best on train loss: BN 0.01, none 0.1
    choice = primary_choice([get_claim("faster-convergence")])
    fig = plot_convergence(runs, curves, choice=choice)
    labels = [t.get_text() for t in fig.legends[0].get_texts()][:2]
    assert labels == ["BN (batch) at LR: 0.01", "no norm (none) at LR: 0.1"]
    title = fig.get_suptitle().replace("\n", " ")
    assert "claim 1's primary measure, each at its best LR (chosen on final train loss" in title
    caption = {name: caption for name, _, caption, _ in figure_specs(runs, curves, None, choice)}
    assert "claim 1's primary measure" in caption["convergence"]
    default = [t.get_text() for t in plot_convergence(runs, curves).legends[0].get_texts()]
    assert default[:2] == ["BN (batch)", "no norm (none)"]  # both at 0.1: said in the title
    # measures that do not take each arm at its best LR leave the figure's own
    assert primary_choice([get_claim("higher-lr")]) is None


def test_convergence_compares_a_pooled_primarys_arms_within_each_activation():
    """Claim 9 pools ReLU and tanh: each placement's best LR is chosen per activation (as
    its measure does), so each pair of lines shares the activation, where the best runs
    over everything would set BN before with tanh against BN after with ReLU."""
    from bnbench.claims.registry import get_claim
    from bnbench.report.figures import primary_choice
    from bnbench.report.plots_convergence import compared_runs, plot_convergence

    index = pd.MultiIndex.from_product(
        [["relu", "tanh"], ["pre", "post"], [0.1, 1.0], [0, 1]],
        names=["model.activation", "model.placement", "optim.lr", "seed"],
    )
    runs = index.to_frame(index=False).assign(**{"model.norm": "batch", "model.head_norm": False})
    runs["run_id"] = [f"r{i}" for i in range(len(runs))]
    runs["status"], runs["chance_acc"] = "completed", 0.1
    relu, pre, low = (
        runs[k].eq(v)
        for k, v in [("model.activation", "relu"), ("model.placement", "pre"), ("optim.lr", 0.1)]
    )
    # best overall: post with relu, pre with tanh; the best LR differs by arm and activation
    runs["val_acc"] = 0.6 + 0.2 * (relu != pre) + 0.05 * (low == (relu == pre))
    runs["test_acc"] = runs["val_acc"]
    choice = primary_choice([get_claim("placement")])
    members, used = compared_runs(runs, choice)
    assert used is choice and choice.within == ("model.activation",)
    assert list(members) == [
        "treatment, activation relu",
        "control, activation relu",
        "treatment, activation tanh",
        "control, activation tanh",
    ]
    for name, member in members.items():
        assert member["model.activation"].nunique() == 1 and len(member) == 2  # two seeds
        assert member["model.activation"].iloc[0] == name.rsplit(" ", 1)[1]
        assert member["model.placement"].iloc[0] == ("post" if "treatment" in name else "pre")
        assert member["optim.lr"].nunique() == 1
    lrs = [m["optim.lr"].iloc[0] for m in members.values()]
    assert lrs == [1.0, 0.1, 0.1, 1.0]  # each arm's own best LR within each activation
    curves = runs[["run_id", "seed", "status"]].merge(pd.DataFrame({"epoch": [1, 2]}), how="cross")
    curves = curves.assign(train_loss=1.0 / curves["epoch"], val_acc=0.4, elapsed_s=1.0)
    labels = [t.get_text() for t in plot_convergence(runs, curves, choice=choice).legends[0].texts]
    assert labels[:4] == [
        "BN placement: post at activation: relu, LR: 1",
        "BN placement: pre at activation: relu, LR: 0.1",
        "BN placement: post at activation: tanh, LR: 0.1",
        "BN placement: pre at activation: tanh, LR: 1",
    ]


def test_convergence_draws_the_loss_per_optimizer_step_where_steps_csv_has_it():
    """A 2-epoch sweep is a straight line per epoch; its steps.csv rows give the curve."""
    from test_report import fake_runs

    from bnbench.report.plots_convergence import plot_convergence

    runs, curves = fake_runs(**{"optim.lr": [0.01]})
    steps = runs[["run_id"]].merge(pd.DataFrame({"step": [20, 40, 60, 80]}), how="cross")
    steps["train_loss"] = 2.0 / steps["step"] ** 0.5
    fig = plot_convergence(runs, curves, steps)
    loss = fig.axes[0]
    assert loss.get_xlabel() == "optimizer step"
    assert [list(line.get_xdata()) for line in loss.lines] == [[20, 40, 60, 80]] * 2
    per_epoch = plot_convergence(runs, curves).axes[0]  # no steps: per epoch, as before
    assert per_epoch.get_xlabel() == "epoch" and list(per_epoch.lines[0].get_xdata()) == [1, 2]
    # one logged step per run is a point, not a curve: the loss stays per epoch, visible
    one = plot_convergence(runs, curves, steps[steps["step"].eq(80)]).axes[0]
    assert one.get_xlabel() == "epoch" and list(one.lines[0].get_xdata()) == [1, 2]


def test_each_key_is_shown_in_words_of_its_own_never_as_the_raw_key():
    """Claim 10's sweep: dropout rate and position are two settings, and a swept key without
    a figure of its own (head dropout) is titled, labelled and tabled in words."""
    from test_report import fake_runs

    from bnbench.analysis.words import KEY_WORDS, key_text
    from bnbench.report.figures import figure_specs
    from bnbench.report.tables import headline_table

    assert len(set(KEY_WORDS.values())) == len(KEY_WORDS)
    assert key_text("model.dropout") != key_text("model.dropout_position")
    runs, curves = fake_runs(**{"model.head_dropout": [0.0, 0.2], "model.dropout": [0.0, 0.1]})
    specs = {
        name: (title, caption, build) for name, title, caption, build in figure_specs(runs, curves)
    }
    title, caption, build = specs["factor_model_head_dropout"]
    assert title == "Sensitivity to head dropout" and "model." not in caption
    fig = build()
    shown = [fig.get_suptitle(), *(t for ax in fig.axes for t in (ax.get_title(), ax.get_xlabel()))]
    assert not [text for text in shown if "model." in text]
    assert "head dropout" in headline_table(runs).columns
    assert not [c for c in headline_table(runs).columns if "model." in c]


def outside(fig: Figure) -> list[float]:
    """How far (inches) what the figure draws reaches beyond its left, bottom, right and top
    edges, laid out as it is saved: what is there is cut off in the file. Empty if nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    width, height = fig.get_size_inches()
    reach = [-drawn.x0, -drawn.y0, drawn.x1 - width, drawn.y1 - height]
    return reach if max(reach) > 0.01 else []


def test_a_wide_design_is_laid_out_in_rows_at_full_size_with_every_text_inside():
    """Claim 10's design (27 configurations, 9 LR panels, long panel and legend labels): no
    figure is shrunk to fit MAX_PX (which would shrink its text too), nothing is cut off at
    the edges, and the configurations' labels do not overlap."""
    from test_report import fake_runs

    from bnbench.report.figures import figure_specs
    from bnbench.report.style import DPI, figure_dpi

    grid = {"model.dropout": [0.0, 0.05, 0.1], "model.head_dropout": [0.0, 0.2, 0.5]}
    runs, curves = fake_runs(**grid, **{"optim.lr": [0.01, 0.1, 1.0]})
    runs["model.dropout_position"] = np.where(runs["model.dropout"].gt(0), "after_norm", "none")
    runs["model.ghost_batch_size"] = np.where(runs["seed"].ge(0), 8.0, np.nan)
    for name, _, _, build in figure_specs(runs, curves):
        fig = build()
        assert figure_dpi(fig) == DPI, (name, fig.get_size_inches())
        assert not outside(fig), (name, outside(fig))
    from bnbench.report.plots import plot_generalization

    fig = plot_generalization(runs)
    outside(fig)  # lays it out
    renderer = fig.canvas.get_renderer()
    labels = [t.get_window_extent(renderer) for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 27
    assert not any(a.overlaps(b) for a, b in zip(labels, labels[1:], strict=False))


def test_a_legend_with_long_labels_fits_inside_its_figure():
    from matplotlib.lines import Line2D

    from bnbench.report.style import outside_legend

    long = "BN (batch) at ghost batch: 8, block dropout rate: 0, head dropout: 0, LR: 0.1"
    for labels in ([long, long.replace("BN (batch)", "no norm (none)")], [long * 3], ["a", "b"]):
        fig = Figure(figsize=(7, 4), layout="constrained")
        fig.subplots().plot([0, 1], [0, 1])
        outside_legend(fig, [Line2D([], [], label=label) for label in labels], diverged=True)
        assert not outside(fig), labels
