"""The user's own config directory (`--config-dir DIR`, Hydra's `-cd`): experiments and claims
found beside the shipped ones, through the real command line."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import TINY, bnbench

from bnbench.config.paths import CLAIMS_FILE


def user_dir(tmp_path: Path, claims: dict | None = None) -> Path:
    """DIR/experiment/my_sweep.yaml and, when given, DIR/claims.yaml."""
    directory = tmp_path / "mine"
    (directory / "experiment").mkdir(parents=True)
    (directory / "experiment" / "my_sweep.yaml").write_text(
        "# @package _global_\nsweep: my_sweep\ntrain:\n  epochs: 1\n"
    )
    if claims is not None:
        (directory / "claims.yaml").write_text(yaml.safe_dump(claims))
    return directory


def shipped(name: str) -> dict:
    return yaml.safe_load(CLAIMS_FILE.read_text())[name]


def test_run_finds_a_user_experiment(tmp_path: Path) -> None:
    mine = user_dir(tmp_path)
    args = ["run", "--dry-run", *TINY, "experiment=my_sweep", f"results_dir={tmp_path}"]
    out = bnbench(*args[:2], "-cd", str(mine), *args[2:], cwd=tmp_path).stdout
    assert f"{tmp_path}/my_sweep/runs" in out
    refused = bnbench(*args, cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "my_sweep" in refused.stderr


def test_missing_config_dir_is_refused(tmp_path: Path) -> None:
    result = bnbench(
        "run", "--config-dir", str(tmp_path / "nope"), *TINY, cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert "invalid --config-dir" in result.stderr and "no such directory" in result.stderr


def test_claims_list_shows_where_each_claim_comes_from(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich would cut the path in a narrow table
    mine = user_dir(tmp_path, {"my-placement": {**shipped("placement"), "number": 11}})
    out = bnbench("claims", "list", "--config-dir", str(mine), cwd=tmp_path).stdout
    row = next(line for line in out.splitlines() if "my-placement" in line)
    assert "mine/claims.yaml" in row
    assert "shipped" in next(line for line in out.splitlines() if " placement " in line)
    shown = bnbench("claims", "show", "my-placement", "-cd", str(mine), cwd=tmp_path).stdout
    assert "11. my-placement" in shown


def test_a_user_claim_named_like_a_shipped_one_is_refused(tmp_path: Path) -> None:
    mine = user_dir(tmp_path, {"placement": shipped("placement")})
    result = bnbench("claims", "list", "-cd", str(mine), cwd=tmp_path, check=False)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "'placement' is already defined" in line


def test_a_bad_users_claims_file_reports_every_problem_in_one_line(tmp_path: Path) -> None:
    good = {**shipped("placement"), "number": 11}
    broken = {k: v for k, v in good.items() if k != "why"}
    claims = {
        "placement": good,  # named like a shipped claim
        "../../evil": {**good, "number": 12},  # a name that would be a path
        "no-why": {**broken, "number": 13, "primray": 1},  # two problems in one claim
        "not-a-claim": 5,
    }
    mine = user_dir(tmp_path, claims)
    result = bnbench("claims", "list", "-cd", str(mine), cwd=tmp_path, check=False)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("bnbench: ")
    file = mine / "claims.yaml"
    for problem in [
        f"{file}: claim '../../evil': a name is lowercase",
        f"{file}: claim 'no-why': missing why; unknown key(s) primray",
        f"{file}: claim 'not-a-claim': expected a mapping",
        f"{file}: claim 'placement' is already defined in {CLAIMS_FILE}",
    ]:
        assert problem in line
