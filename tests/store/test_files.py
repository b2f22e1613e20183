"""The run files' writes: summary.json stays strict JSON whatever the numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bnbench.store.files import write_json


def strict_json(path: Path):
    """json.loads that refuses the NaN / Infinity tokens Python writes by default."""

    def refuse(token: str):
        raise ValueError(f"{path} holds bare {token}: not valid JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_write_json_writes_non_finite_numbers_as_null(tmp_path):
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": "nan", "e": 2.5}
    write_json(tmp_path / "x.json", data)
    assert strict_json(tmp_path / "x.json") == {
        "a": None,
        "b": [1.0, None, {"c": None}],
        "d": "nan",
        "e": 2.5,
    }
