"""The claims as data: conf/claims.yaml loads and says what each claim must say; every arm
of every measure exists in its sweep; a malformed claims file names the claim and the key;
verdicts on sweeps with a plan file (incomplete, known answers from hand-made run files);
a claim added in YAML alone, judged end to end on a real tiny sweep; every claim through
`bnbench claims run` (slow)."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY, bnbench

from bnbench.analysis.measures import MEASURES
from bnbench.analysis.stats import OUTCOMES, holm
from bnbench.claims.registry import (
    Claim,
    ClaimFileError,
    Measure,
    UnknownClaim,
    get_claim,
    load_claims,
    parse_claim,
)
from bnbench.claims.verdict import differences, secondary_table, verdict
from bnbench.config.identity import flatten
from bnbench.config.paths import CLAIMS_FILE
from bnbench.store.files import EVALS_COLUMNS, METRIC_COLUMNS, PROBE_COLUMNS, run_path
from bnbench.store.planfile import PLAN_FILE, Plan, read_plan, write_plan

CONF = CLAIMS_FILE.parent
CLAIMS = load_claims()


def measures_of(claim: Claim) -> list[Measure]:
    return [claim.primary, *claim.secondary]


# --- conf/claims.yaml ----------------------------------------------------------------------


def test_the_claims_file_holds_ten_claims_numbered_in_order():
    assert len(CLAIMS) == 10
    assert [c.number for c in CLAIMS.values()] == list(range(1, 11))
    assert list(CLAIMS)[:2] == ["faster-convergence", "higher-lr"]
    assert all(name == claim.name for name, claim in CLAIMS.items())


@pytest.mark.parametrize("name", list(CLAIMS))
def test_each_claim_says_what_a_claim_must_say(name):
    claim = CLAIMS[name]
    assert isinstance(claim.primary, Measure)  # exactly one primary measure
    assert all(isinstance(m, Measure) for m in claim.secondary)
    assert claim.why.strip() and claim.text.strip() and claim.anchor.strip()
    assert (CONF / "experiment" / f"{claim.experiment}.yaml").is_file()
    for measure in measures_of(claim):
        assert measure.measure in MEASURES
        assert isinstance(measure.delta, int | float) and measure.delta > 0
        assert measure.direction in ("higher", "lower") and measure.ci in ("t", "bca")
        assert measure.label.strip() and measure.unit.strip()
        for arm in (measure.treatment, measure.control):  # an arm, or a list of arms
            assert all(isinstance(part, dict) for part in (arm if isinstance(arm, list) else [arm]))
        assert isinstance(measure.args, dict)


@pytest.mark.parametrize("name", list(CLAIMS))
def test_no_claim_declares_a_cell_twice(name):
    """Two labels for one cell, or one cell declared twice (claim 7's batch sizes, claim 8's
    test-time conditions) would count the same numbers twice."""
    claim = CLAIMS[name]
    labels = [m.label for m in measures_of(claim)]
    assert len(labels) == len(set(labels)), labels
    cells = []
    for m in measures_of(claim):
        args = dict(m.args)
        at = args.pop("at", [None])
        for value in at if isinstance(at, list) else [at]:
            key = (m.measure, repr(m.treatment), repr(m.control), repr(sorted(args.items())), value)
            cells.append(key)
    assert len(cells) == len(set(cells)), name


def test_claims_4_and_10_share_a_sweep_and_every_other_claim_has_its_own():
    experiments = [c.experiment for c in CLAIMS.values()]
    shared = {e for e in experiments if experiments.count(e) > 1}
    assert shared == {"claim_regularization"}
    assert CLAIMS["regularization"].experiment == CLAIMS["dropout-interplay"].experiment


def test_unknown_claim_names_the_known_ones():
    with pytest.raises(UnknownClaim, match="unknown claim 'nope'; known: faster-convergence"):
        get_claim("nope")


def test_claims_run_dry_run_counts_the_runs_and_writes_nothing(tmp_path):
    result = bnbench(
        "claims",
        "run",
        "regularization",
        "placement",
        "--profile",
        "quick",
        "--dry-run",
        *TINY,
        f"results_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert (
        f"{tmp_path / 'claim_regularization'}: 12 runs on seeds 0-2, 12 to train" in result.stdout
    )
    assert result.stdout.startswith("profile quick: ")  # said before anything trains
    assert f"{tmp_path / 'claim_placement'}: " in result.stdout
    assert not list(tmp_path.rglob("*"))  # no plan file, no directory


# --- every measure of every claim on a synthetic table of its planned sweep -----------------


CONDITIONS = ["running", "precise"] + [
    f"batch_b{n}_{order}" for n in (1, 8, 32, 128, 256) for order in ("shuffled", "sorted")
]


def synthetic_sweep(
    experiment: str, profile: str, overrides: list[str], directory: Path
) -> pd.DataFrame:
    """The profile's planned runs (the claims' extra cells included, as `claims run` plans
    them) as a runs table with made-up results, and for each run an evals.csv and a
    probes.csv, so every measure has what it reads."""
    from bnbench.sweep.claim_sweeps import plan_claims

    claims = [c for c in CLAIMS.values() if c.experiment == experiment]
    plan = plan_claims(claims, profile, overrides)[0].plan
    rng = np.random.default_rng(0)
    rows = []
    for p in plan:
        config = flatten(asdict(p.config))  # as config.yaml holds it
        flat = {k: json.dumps(v) if isinstance(v, list) else v for k, v in config.items()}
        val = rng.uniform(0.3, 0.9)
        rows.append(
            flat
            | {
                "run_id": p.run_id,
                "status": "completed",
                "val_acc": val,
                "test_acc": val - 0.02,
                "train_eval_acc": min(1.0, val + 0.1),
                "train_loss": 1.0 - val,
                "train_s": 10.0,
                "wall_time_s": 12.0,
                "chance_acc": 0.1,
            }
        )
        evals = [[s, 1, 1.0, val * s / 40] for s in (8, 16, 24, 32, 40)]
        layers = ("a", "b", "c")
        probes = [[t, "ics_cos", layer, rng.uniform(0.5, 1)] for t in (0, 10) for layer in layers]
        probes += [[0, "grad_norm", layer, rng.uniform(0.1, 10)] for layer in layers]
        probes += [
            [t, f"act_p{q}", layer, q / 50 + rng.uniform(0, t / 10)]
            for t in (0, 10)
            for q in (15, 50, 85)
            for layer in layers
        ]
        probes += [[-1, "test_time_acc", c, rng.uniform(0.1, 0.9)] for c in CONDITIONS]
        path = run_path(directory, p.run_id)
        path.mkdir(parents=True)
        pd.DataFrame(evals, columns=EVALS_COLUMNS).to_csv(path / "evals.csv", index=False)
        pd.DataFrame(probes, columns=PROBE_COLUMNS).to_csv(path / "probes.csv", index=False)
    return pd.DataFrame(rows)


def synthetic_sweeps(
    root: Path, profile: str, overrides: list[str]
) -> dict[str, tuple[pd.DataFrame, Path]]:
    experiments = dict.fromkeys(c.experiment for c in CLAIMS.values())
    return {e: (synthetic_sweep(e, profile, overrides, root / e), root / e) for e in experiments}


@pytest.fixture(scope="module")
def full_sweeps(tmp_path_factory) -> dict[str, tuple[pd.DataFrame, Path]]:
    # The full profile's cells, at three of its seeds (planning is about 20 ms a run).
    return synthetic_sweeps(tmp_path_factory.mktemp("full"), "full", ["seed=0,1,2"])


@pytest.fixture(scope="module")
def quick_sweeps(tmp_path_factory) -> dict[str, tuple[pd.DataFrame, Path]]:
    return synthetic_sweeps(tmp_path_factory.mktemp("quick"), "quick", [])


@pytest.mark.parametrize("name", list(CLAIMS))
def test_every_arm_exists_in_the_full_sweep_and_every_measure_gives_distinct_cells(
    full_sweeps, name
):
    """Each arm of each measure picks planned runs; the primary measure gives one cell; each
    cell pairs the seeds; no two cells of the claim share a label."""
    from bnbench.analysis.pairing import in_arm

    claim = CLAIMS[name]
    runs, sweep = full_sweeps[claim.experiment]
    labels = []
    for measure in measures_of(claim):
        for arm in (measure.treatment, measure.control):
            assert in_arm(runs, arm).any(), (name, measure.label, arm)
        diffs = differences(measure, runs, sweep)
        assert set(diffs.columns) >= {"cell", "seed", "diff"}
        for cell, group in diffs.groupby("cell", sort=False):
            assert sorted(group["seed"]) == [0, 1, 2], (name, cell)
            assert group["diff"].notna().all(), (name, cell)
            labels.append((measure.label, cell))
        if measure is claim.primary:
            assert diffs["cell"].nunique() == 1, (name, diffs["cell"].unique())
    assert len(labels) == len(set(labels)), labels  # (measure label, cell)
    table = secondary_table(claim.secondary, runs, sweep)
    if len(table):
        np.testing.assert_allclose(table["p_holm"], holm(table["p"]))
        assert table["name"].is_unique, list(table["name"])  # each row as the report names it
        assert set(table["outcome"]) <= set(OUTCOMES)


@pytest.mark.parametrize("name", list(CLAIMS))
def test_the_quick_sweep_holds_each_primary_measure_over_three_seeds(quick_sweeps, name):
    """The quick profile runs the primary cells (secondary ones may be left out)."""
    claim = CLAIMS[name]
    runs, sweep = quick_sweeps[claim.experiment]
    diffs = differences(claim.primary, runs, sweep)
    assert diffs["cell"].nunique() == 1, (name, diffs["cell"].unique())
    assert sorted(diffs["seed"]) == [0, 1, 2] and diffs["diff"].notna().all(), name


def test_extra_cells_join_their_claims_sweep_in_the_full_profile_only():
    """Claim 10's variance-shift arm and claim 4's no-BN arms train on their own LR grids, a
    half-decade below BN's (no cartesian sweep holds these); each claim plans only its own
    extra cells; the quick profile, primary cells only, leaves them out."""
    from bnbench.sweep.claim_sweeps import plan_claims

    claims = [CLAIMS["regularization"], CLAIMS["dropout-interplay"]]
    full = plan_claims(claims, "full", ["seed=0"])[0].plan
    lrs = {}
    for p in full:
        arm = (p.config.model.norm, p.config.model.dropout_position, p.config.model.dropout)
        lrs.setdefault(arm, set()).add(p.config.optim.lr)
    assert lrs[("batch", "before_norm", 0.3)] == {0.01, 0.03, 0.1}
    assert lrs[("batch", "after_norm", 0.0)] == {0.1, 0.3, 1.0}
    assert lrs[("none", "after_norm", 0.0)] == {0.01, 0.03, 0.1}
    assert len({p.run_id for p in full}) == len(full) == 30
    alone = plan_claims([CLAIMS["dropout-interplay"]], "full", ["seed=0"])[0].plan
    assert {p.config.model.norm for p in alone} == {"batch"} and len(alone) == 21
    quick = plan_claims(claims, "quick", [])[0].plan
    assert not any(p.config.model.dropout for p in quick)


def test_an_extra_cell_that_writes_to_another_sweep_is_refused():
    from dataclasses import replace

    from bnbench.config.schema import ConfigError
    from bnbench.sweep.claim_sweeps import plan_claims

    stray = replace(CLAIMS["test-time-stats"], extra_cells=("claim_placement",))
    with pytest.raises(ConfigError, match="claim_placement.*set its `sweep`"):
        plan_claims([stray], "full", ["seed=0"])


# --- a malformed claims file ---------------------------------------------------------------


def placement_entry() -> dict:
    return copy.deepcopy(yaml.safe_load(CLAIMS_FILE.read_text())["placement"])


def edit(change):
    def apply():
        entry = placement_entry()
        change(entry)
        return entry

    return apply


@pytest.mark.parametrize(
    "make, words",
    [
        (edit(lambda e: e.pop("why")), ["missing", "why"]),
        (edit(lambda e: e.pop("primary")), ["missing", "primary"]),
        (edit(lambda e: e.update(primray=e["primary"])), ["unknown key", "primray"]),
        (edit(lambda e: e["primary"].update(delt=1.0)), ["delt"]),
        (edit(lambda e: e["primary"].pop("unit")), ["unit"]),
        (edit(lambda e: e["primary"].update(measure="best_metric")), ["best_metric"]),
        (edit(lambda e: e["primary"].update(direction="up")), ["direction", "up"]),
        (edit(lambda e: e["primary"].update(ci="boot")), ["ci", "boot"]),
        (edit(lambda e: e["primary"].update(delta=0)), ["delta"]),
        (edit(lambda e: e["secondary"][0].update(delta=-1.0)), ["delta"]),
        (edit(lambda e: e["primary"].update(delta="one")), ["delta"]),
        (edit(lambda e: e["primary"].update(delta=None)), ["delta"]),
        (edit(lambda e: e["primary"]["args"].update(metrc="val_acc")), ["metrc"]),
        (edit(lambda e: e["primary"].update(treatment="post")), ["treatment"]),
        (edit(lambda e: e.update(extra_cells="claim_placement")), ["extra_cells"]),
        (lambda: None, []),
    ],
)
def test_a_malformed_claim_is_a_claim_file_error_naming_the_claim_and_key(make, words, tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"placement": make()}))
    with pytest.raises(ClaimFileError) as error:
        load_claims(path)
    assert "'placement'" in str(error.value)
    for word in words:
        assert word in str(error.value)


# --- verdicts from a sweep's plan file ------------------------------------------------------


def test_a_sweep_without_a_plan_is_incomplete(tmp_path):
    result = verdict("placement", tmp_path)
    assert result.status == "incomplete" and (result.n_planned, result.n_done) == (0, 0)
    assert "no plan file" in result.sentence and "bnbench claims run placement" in result.sentence


def test_a_plan_whose_runs_are_missing_is_incomplete(tmp_path):
    sweep = tmp_path / "claim_placement"
    ids = [f"{i:012x}" for i in range(12)]
    write_plan(sweep, Plan("quick", ["debug=tiny"], ids))
    result = verdict("placement", tmp_path)
    assert result.status == "incomplete"
    assert (result.n_planned, result.n_done, result.profile) == (12, 0, "quick")
    assert "0 of 12 planned runs" in result.sentence
    assert "bnbench claims run placement --profile quick" in result.sentence
    assert result.primary == {} and result.secondary.empty


def test_the_incomplete_sentence_never_advises_profile_none(tmp_path):
    write_plan(tmp_path / "claim_placement", Plan(None, [], ["0" * 12]))
    result = verdict("placement", tmp_path)
    assert result.status == "incomplete" and "None" not in result.sentence


# Hand-made run files: a finished run as bnbench.analysis.tables reads it, no training.


def write_run(sweep: Path, run_id: str, config: dict, val: float, test: float) -> None:
    directory = run_path(sweep, run_id)
    directory.mkdir(parents=True)
    tree: dict = {}
    for key, value in config.items():  # {"model.norm": "batch"} -> {"model": {"norm": ...}}
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (directory / "config.yaml").write_text(yaml.safe_dump(tree))
    final = {"train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.6, "val_acc": val}
    final |= {"test_loss": 0.6, "test_acc": test, "lr": config["optim.lr"], "grad_norm": 1.0}
    summary = {"run_id": run_id, "status": "completed", "epochs_completed": 1}
    summary |= {"final": final, "wall_time_s": 1.0, "num_classes": 10}
    (directory / "summary.json").write_text(json.dumps(summary))
    metrics = {"epoch": 1, **final, "epoch_time_s": 1.0}
    row = ",".join(str(metrics[c]) for c in METRIC_COLUMNS)
    (directory / "metrics.csv").write_text(",".join(METRIC_COLUMNS) + "\n" + row + "\n")


PLACEMENT_LIKE = {
    "number": 9,
    "text": "BN after the activation beats BN before it.",
    "source": "a-test",
    "experiment": "placement_by_hand",
    "anchor": "none",
    "why": "a known answer",
    "primary": {
        "measure": "final_metric",
        "treatment": {"model.placement": "post"},
        "control": {"model.placement": "pre"},
        "args": {"metric": "test_acc", "over": ["optim.lr"]},
        "label": "test accuracy, post - pre, each at its best LR",
        "unit": "points",
        "direction": "higher",
        "delta": 0.5,
    },
    "secondary": [
        {
            "measure": "final_metric",
            "treatment": {"model.placement": "post"},
            "control": {"model.placement": "pre"},
            "args": {"metric": "test_acc", "by": ["optim.lr"]},
            "label": "per-LR cells",
            "unit": "points",
            "direction": "higher",
            "delta": 0.5,
        }
    ],
}


def placement_sweep(
    root: Path, seeds: int = 8, experiment: str = "placement_by_hand", activations=("relu",)
) -> list[str]:
    """post beats pre by 2 + seed/10 test points at its best LR (0.1 for both, on val);
    at lr 1.0 the two tie on test except one seed. Returns the run ids."""
    sweep, ids = root / experiment, []
    for seed in range(seeds):
        for activation in activations:
            for placement in ("post", "pre"):
                for lr in (0.1, 1.0):
                    run_id = f"{activation}-{placement}-{lr}-{seed}"
                    best = lr == 0.1
                    val = 0.8 if best else 0.6
                    if best:
                        test = 0.80 + (0.02 + 0.001 * seed if placement == "post" else 0.0)
                    else:
                        test = 0.5 + (0.01 if placement == "post" and seed == 0 else 0.0)
                    config = {"model.placement": placement, "optim.lr": lr, "seed": seed}
                    config |= {"model.activation": activation, "model.norm": "batch"}
                    config |= {"dataset.name": "synthetic"}
                    write_run(sweep, run_id, config, val, test)
                    ids.append(run_id)
    return ids


def test_verdict_on_hand_made_runs_gives_the_known_answer(tmp_path):
    claim = parse_claim("by-hand", copy.deepcopy(PLACEMENT_LIKE))
    ids = placement_sweep(tmp_path)
    sweep = tmp_path / "placement_by_hand"
    write_plan(sweep, Plan("full", [], ids))
    write_run(
        sweep, "not-planned", {"model.placement": "pre", "optim.lr": 0.1, "seed": 0}, 0.8, 0.0
    )
    result = verdict(claim, tmp_path)
    assert result.status == "supported"
    assert (result.n_planned, result.n_done, result.profile) == (32, 32, "full")
    primary = result.primary
    assert primary["n"] == 8 and primary["p"] == pytest.approx(2 / 256)
    assert primary["mean"] == pytest.approx(2.0 + 0.1 * np.mean(range(8)))  # points
    # the arms named by what differs (placement), each at its LR, not by the LR they share
    assert primary["cell"] == "test_acc (BN placement post vs pre, LR 0.1 in both)"
    assert primary["unit"] == "points"
    assert "SUPPORTED" in result.sentence and "n=8" in result.sentence
    # the secondary cells: lr 0.1 as the primary, lr 1.0 one seed at +1 point, seven ties;
    # Holm over the two of them only
    table = result.secondary.set_index("cell")
    lr01, lr1 = "LR 0.1 (BN placement post vs pre)", "LR 1 (BN placement post vs pre)"
    assert list(table.index) == [lr01, lr1]
    assert table.loc[lr1, "p"] == pytest.approx(1.0)
    assert table.loc[lr1, "mean"] == pytest.approx(1.0 / 8)
    assert table.loc[lr01, "p_holm"] == pytest.approx(2 * 2 / 256)
    assert table.loc[lr1, "p_holm"] == pytest.approx(1.0)


def test_claims_verdict_command_judges_a_copied_sweep_from_its_files_alone(tmp_path):
    """`bnbench claims verdict` on a results root holding only run files and plan.json,
    run from a directory without Hydra config files."""
    root = tmp_path / "copied"
    ids = placement_sweep(root, experiment="claim_placement", activations=("relu", "tanh"))
    write_plan(root / "claim_placement", Plan("full", [], ids))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = bnbench("claims", "verdict", "placement", str(root), cwd=elsewhere)
    out = " ".join(result.stdout.split())
    assert out.startswith("SUPPORTED (claimed: higher)")
    assert "n=8" in out and "exact p=0.008 (the exact test's floor at n=8)" in out  # 2/256
    # the pooled cell names what the arms differ in, then each activation's chosen LRs
    pooled = "test_acc, BN placement post vs pre, the mean of activation relu (LR 0.1 in both);"
    assert pooled in out and "lr=0.1 vs lr=0.1" not in out
    assert "runs in" in out  # the title names the sweep that was judged
    judged = verdict("placement", root)
    assert judged.status == "supported" and judged.secondary["name"].tolist() == [
        "activation relu (BN placement post vs pre, LR 0.1 in both)",
        "activation tanh (BN placement post vs pre, LR 0.1 in both)",
    ]
    # two secondary cells, each 2/256: Holm doubles both (the head-BN cell has no runs here)
    assert judged.secondary["p_holm"].tolist() == pytest.approx([4 / 256, 4 / 256])


def test_claims_verdict_command_exits_3_on_an_incomplete_sweep(tmp_path):
    write_plan(tmp_path / "claim_placement", Plan("quick", [], ["0" * 12]))
    result = bnbench("claims", "verdict", "placement", str(tmp_path), cwd=tmp_path, check=False)
    out = " ".join(result.stdout.split())
    assert result.returncode == 3 and "incomplete: 0 of 1 planned runs" in out


def test_a_planned_run_that_failed_makes_the_verdict_incomplete(tmp_path):
    claim = parse_claim("by-hand", copy.deepcopy(PLACEMENT_LIKE))
    ids = placement_sweep(tmp_path, seeds=2)
    sweep = tmp_path / "placement_by_hand"
    summary = run_path(sweep, ids[0]) / "summary.json"
    summary.write_text(json.dumps(json.loads(summary.read_text()) | {"status": "failed"}))
    write_plan(sweep, Plan("quick", [], ids))
    result = verdict(claim, tmp_path)
    assert result.status == "incomplete" and (result.n_planned, result.n_done) == (8, 7)


def test_a_plan_without_one_arm_of_the_primary_is_incomplete_not_an_error(tmp_path):
    """`bnbench run -m experiment=claim_regularization` plans claim 4's BN runs alone (its
    no-BN control is an extra cell); the verdict names the command that plans the whole
    sweep, with claim 10, which shares it, so neither claim's extra cell drops out."""
    sweep, ids = tmp_path / "claim_regularization", []
    for seed in range(3):
        for lr in (0.1, 0.3):
            config = {"model.norm": "batch", "model.dropout": 0.0, "model.head_dropout": 0.0}
            config |= {"model.ghost_batch_size": None}
            config |= {"optim.lr": lr, "seed": seed, "dataset.name": "synthetic"}
            ids.append(f"bn-{lr}-{seed}")
            write_run(sweep, ids[-1], config, 0.8, 0.8)
    write_plan(sweep, Plan(None, ["experiment=claim_regularization"], ids))
    result = verdict("regularization", tmp_path)
    assert result.status == "incomplete" and (result.n_planned, result.n_done) == (6, 6)
    assert "no runs of the primary measure's control arm;" in result.sentence
    command = "bnbench claims run regularization dropout-interplay --profile full"
    assert f"{command} results_dir={tmp_path}" in result.sentence


def test_a_primary_measure_that_gives_several_cells_is_refused(tmp_path):
    entry = copy.deepcopy(PLACEMENT_LIKE)
    entry["primary"]["args"] = {"metric": "test_acc", "by": ["optim.lr"]}
    claim = parse_claim("by-hand", entry)
    ids = placement_sweep(tmp_path, seeds=2)
    write_plan(tmp_path / "placement_by_hand", Plan(None, [], ids))
    with pytest.raises(ClaimFileError, match="one cell"):
        verdict(claim, tmp_path)


# --- a claim added in YAML alone, judged on a real tiny sweep -------------------------------

GROUP_NORM_CLAIM = """\
gn-matches-bn:
  number: 11
  text: "Group norm matches batch norm at batch 128."
  source: wu-he-2018
  experiment: gn_vs_bn
  anchor: "Wu & He 2018: GN within a few tenths of a point of BN at 32 images per GPU"
  why: >-
    Matching is equivalence: the 90% CI of GN - BN val accuracy inside +-2 points.
  primary:
    measure: final_metric
    treatment: {model.norm: group}
    control: {model.norm: batch}
    args: {metric: val_acc}
    label: "val accuracy, group norm - batch norm"
    unit: points
    direction: higher
    delta: 2.0
"""


@pytest.fixture(scope="module")
def group_norm_sweep(tmp_path_factory) -> tuple[Path, bool]:
    """A real tiny sweep, GN and BN x 3 seeds, through the command line; and whether the
    command wrote the sweep's plan file itself."""
    root = tmp_path_factory.mktemp("yaml_claim")
    args = ["run", "-m", *TINY, "model.norm=batch,group", "seed=0,1,2", "sweep=gn_vs_bn"]
    bnbench(*args, f"results_dir={root}", cwd=root)
    return root, (root / "gn_vs_bn" / PLAN_FILE).exists()


def test_a_claim_added_in_yaml_alone_is_judged_end_to_end(group_norm_sweep, tmp_path):
    root, _ = group_norm_sweep
    path = tmp_path / "my_claims.yaml"
    path.write_text(GROUP_NORM_CLAIM)
    claims = load_claims(path)
    assert list(claims) == ["gn-matches-bn"]
    claim = claims["gn-matches-bn"]
    assert claim.primary.delta == 2.0 and claim.secondary == ()
    sweep = root / "gn_vs_bn"
    ids = sorted(p.name for p in (sweep / "runs").iterdir())
    assert len(ids) == 6
    plan = read_plan(sweep) or Plan(None, [*TINY, "model.norm=batch,group", "seed=0,1,2"], ids)
    write_plan(sweep, plan)
    result = verdict(claim, root)
    assert result.status in OUTCOMES
    assert result.primary["n"] == 3 and (result.n_planned, result.n_done) == (6, 6)
    assert result.primary["outcome"] == result.status
    assert result.primary["cell"] == "val_acc (norm group vs batch)"
    assert "delta=2 points" in result.sentence
    # at n = 3 the exact p is at least 2/8: this sweep can show no effect, or nothing
    assert result.primary["p"] >= 0.25 and result.status in ("no effect", "inconclusive")


def test_bnbench_run_writes_the_sweeps_plan_file(group_norm_sweep):
    _, wrote_plan = group_norm_sweep
    assert wrote_plan


# --- every claim through the real command line ----------------------------------------------


@pytest.fixture(scope="module")
def every_claim(tmp_path_factory) -> tuple[Path, str]:
    """Every claim's quick sweep on the tiny config through one `bnbench claims run --all`:
    one pool of workers, each run trained once, then the reports and the verdicts."""
    root = tmp_path_factory.mktemp("claims")
    out = bnbench(
        "claims", "run", "--all", "--profile", "quick", *TINY, f"results_dir={root}", cwd=root
    )
    return root, out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLAIMS))
def test_every_claim_end_to_end_on_a_tiny_sweep(every_claim, name):
    """Each claim's verdict from the run files and the plan file the command wrote, and the
    same outcome in its report and in the root's index."""
    root, stdout = every_claim
    claim = CLAIMS[name]
    plan = read_plan(root / claim.experiment)
    assert plan is not None and plan.profile == "quick" and "debug=tiny" in plan.overrides
    result = verdict(name, root)
    assert result.status in OUTCOMES, result.sentence
    assert result.n_done == result.n_planned == len(plan.run_ids) > 0
    assert result.primary["n"] == 3  # three seeds, paired
    assert result.sentence.startswith(("PREVIEW", result.status.upper()))
    if result.sentence.startswith("PREVIEW"):  # says how to decide it
        assert "To decide: `bnbench claims run " in result.sentence
        assert "--profile confirmatory`" in result.sentence
    if len(result.secondary):
        assert (result.secondary["n"] <= 3).all()
    report = (root / claim.experiment / "REPORT.md").read_text()
    assert f"Claim {claim.number}, {name}: {result.status}" in report
    index = (root / "REPORT.md").read_text()
    assert f"| [{claim.number}. {name}]({claim.experiment}/REPORT.md) | {result.status} |" in index
    assert "![Every claim's primary effect](figures/overview.png)" in index  # all ten at once
    assert " ".join(result.sentence.split())[:60] in " ".join(stdout.split())
