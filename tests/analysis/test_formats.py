"""How numbers read on every page: one p format, an effect and its CI at one number of
decimals, no sign a value does not have, and a unit in the right number."""

from __future__ import annotations

import math

from bnbench.analysis.formats import fmt_p, quantity, signed, signed_alike
from bnbench.claims.display import effect_text


def test_every_p_has_one_format_whichever_test_gave_it():
    shown = [fmt_p(p) for p in (0.25, 0.03125, 2 / 1024, 4e-4, 7e-12, 1.0, math.nan, None)]
    assert shown == ["0.250", "0.031", "0.002", "<0.001", "<0.001", "1.000", "-", "-"]


def test_an_effect_and_its_ci_share_their_decimals():
    assert effect_text(-1.14, -1.36, -0.784, "log2 steps") == "-1.14 [-1.36, -0.78] log2 steps"
    assert signed_alike(0.299, 0.00341, 0.595) == ["+0.299", "+0.003", "+0.595"]
    assert signed_alike(65.9, 52.7, 79.1) == ["+65.9", "+52.7", "+79.1"]
    assert signed_alike(-0.0517, -0.0637, -0.0398) == ["-0.0517", "-0.0637", "-0.0398"]


def test_a_value_that_rounds_to_zero_has_no_sign():
    assert signed(-0.04, 1) == "0.0" and signed(0.04, 1) == "0.0"
    assert signed(-0.06, 1) == "-0.1" and signed(2.0, 1) == "+2.0"
    assert signed_alike(-0.05, -0.2, 0.0001) == ["-0.050", "-0.200", "0.000"]


def test_a_quantity_of_one_is_singular():
    assert quantity(1.0, "points") == "1 point" and quantity(0.5, "points") == "0.5 points"
    assert (
        quantity(1, "decades") == "1 decade" and quantity(0.32, "log2 steps") == "0.32 log2 steps"
    )
    assert quantity(1, "1 - cos") == "1 1 - cos"
