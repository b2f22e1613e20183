"""How numbers read, defined once for every table, verdict sentence and terminal line: a
p-value in one format, an effect and its CI at one number of decimals, a quantity with its
unit in the right number ("1 point", "2 points")."""

from __future__ import annotations

import math

P_FLOOR = 0.001  # a smaller p is shown as "<0.001": its digits would only be noise


def fmt_p(p: float | None) -> str:
    """A p-value as every page shows it, whichever test gave it: three decimals ('0.002',
    '0.250'), '<0.001' below that, '-' where there is none."""
    if p is None or math.isnan(p):
        return "-"
    return f"<{P_FLOOR:g}" if p < P_FLOOR else f"{p:.3f}"


def shared_decimals(*values: float, digits: int = 3) -> int:
    """The decimals that give the largest of `values` (in size) `digits` significant digits:
    an effect and its CI bounds written alike, not '-1.36, -0.784'."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return digits - 1
    return max(0, digits - 1 - math.floor(math.log10(max(finite))))


def signed(value: float | None, decimals: int) -> str:
    """'+1.83', '-0.43'; a value that rounds to zero is '0.00', with no sign it may not
    have ('+0.0' for -0.04 would say the opposite of the value)."""
    if value is None or math.isnan(value):
        return "nan"
    text = f"{value:+.{decimals}f}"
    return text[1:] if float(text) == 0 else text


def signed_alike(*values: float | None, digits: int = 3) -> list[str]:
    """Each value signed, all at shared_decimals: '+0.299', '+0.003', '+0.595'."""
    decimals = shared_decimals(*(v for v in values if v is not None), digits=digits)
    return [signed(v, decimals) for v in values]


def quantity(value: float, unit: str) -> str:
    """'1 point', '0.32 log2 steps': a unit that ends in a plural noun (points, decades,
    steps; not '1 - cos') singular for exactly one."""
    last = unit.rsplit(" ", 1)[-1]
    plural = last.isalpha() and len(last) > 3 and last.endswith("s") and not last.endswith("ss")
    return f"{value:g} {unit[:-1] if value == 1 and plural else unit}"
