"""The claims on trial, as the registry in conf/claims.yaml (and each --config-dir's
claims.yaml) declares them.

A claim is data: its sentence and source, the sweep that tests it, and one pre-registered
*primary* measure (bnbench.analysis.measures, with its arms, arguments, direction, `delta`
and CI method) that decides the verdict; *secondary* measures are reported beside it,
Holm-adjusted among themselves, and never change it. The rule
(bnbench.analysis.stats.judge_paired) gives one of supported | contradicted | no effect |
inconclusive; a sweep with planned runs missing gets `incomplete` instead (the verdict:
bnbench.claims.verdict).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bnbench.analysis.measures import MEASURES
from bnbench.config.paths import claims_files

DIRECTIONS = ("higher", "lower")
CI_METHODS = ("t", "bca")
# A declared reading: words a claim adds to its verdict when its secondaries say so, fixed
# before the runs like the measures. `split`: the cells of one secondary measure have
# opposite signs, each with a Holm p below 0.05. `unconfirmed`: the primary is supported
# but one secondary measure is not. `explained`: the primary is decided (supported or
# contradicted) and one secondary measure, a control arm, shows no effect.
READING_KINDS = ("split", "unconfirmed", "explained")


class UnknownClaim(KeyError):
    def __str__(self) -> str:
        return self.args[0]


# The articles whose claims are on trial, by the `source` name claims.yaml gives them;
# docs/articles.md summarises each.
ARTICLES = {
    "improving-deep-learning-models-with-batch-normalization": (
        "Improving Deep Learning Models with Batch Normalization"
    ),
    "what-is-batch-normalization": "What is Batch Normalization?",
}


def article_title(source: str) -> str:
    """'"<title>"' for a shipped article; a user's claim keeps the source it names."""
    return f'"{ARTICLES[source]}"' if source in ARTICLES else source


class ClaimFileError(ValueError):
    """conf/claims.yaml (or a user's claims file) does not say what a claim must say."""


@dataclass(frozen=True)
class Measure:
    """One measure of a claim, as declared: what is compared and how it is judged."""

    measure: str  # a name in bnbench.analysis.measures.MEASURES
    treatment: dict | list  # an arm {config key: value or [values]}, or a list of arms (any)
    control: dict | list
    label: str  # what it measures, in words
    unit: str  # the unit of a difference: "points", "decades", "log2 steps", ...
    direction: str  # higher | lower: the sign the claim predicts for treatment - control
    delta: float  # smallest effect of interest, in `unit`
    args: dict = field(default_factory=dict)
    ci: str = "t"  # t | bca


@dataclass(frozen=True)
class Reading:
    kind: str  # one of READING_KINDS
    secondary: int  # which secondary measure, counted from 0 in the claim's list
    text: str  # what the verdict then says, e.g. "the effect depends on the activation"


@dataclass(frozen=True)
class Claim:
    name: str
    number: int
    text: str
    source: str
    experiment: str
    anchor: str
    why: str  # why the primary measure is the sentence, and why its delta
    primary: Measure
    secondary: tuple[Measure, ...] = ()
    # Further experiment files whose runs join the sweep: cells outside its main grid (one
    # arm at one LR, say), which a cartesian Hydra sweep cannot hold. Secondary cells only:
    # the quick profile leaves them out.
    extra_cells: tuple[str, ...] = ()
    readings: tuple[Reading, ...] = ()


def load_claims(path: Path | None = None) -> dict[str, Claim]:
    """The claims of one file, or (no path) of the shipped conf/claims.yaml and each
    --config-dir's claims.yaml; a user claim named like one already loaded is refused.
    ClaimFileError names every problem of every file, not only the first."""
    if path is not None:
        return _read_claims(path)
    claims: dict[str, Claim] = {}
    origins: dict[str, Path] = {}
    problems: list[str] = []
    for origin in claims_files():
        file_claims, file_problems = _claims_and_problems(origin)
        problems += file_problems
        for name, claim in file_claims.items():
            if name in claims:
                problems.append(
                    f"{origin}: claim {name!r} is already defined in {origins[name]}; rename yours"
                )
                continue
            claims[name], origins[name] = claim, origin
    if problems:
        raise ClaimFileError("; ".join(problems))
    return dict(sorted(claims.items(), key=lambda item: item[1].number))


def claim_origins() -> dict[str, Path]:
    """Where each claim is defined: the first file that names it."""
    origins: dict[str, Path] = {}
    for path in claims_files():
        for name in _read_claims(path):
            origins.setdefault(name, path)
    return origins


def _read_claims(path: Path) -> dict[str, Claim]:
    """The claims of one file; ClaimFileError naming every problem in it."""
    claims, problems = _claims_and_problems(path)
    if problems:
        raise ClaimFileError("; ".join(problems))
    return claims


def _claims_and_problems(path: Path) -> tuple[dict[str, Claim], list[str]]:
    """The well-formed claims of one file, in number order, and a line for each entry that
    is not (its first problem per key), each naming the file: one fix-and-retry fixes all."""
    try:
        entries = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        return {}, [f"{path}: not valid YAML ({error.__class__.__name__})"]
    if not isinstance(entries, dict):
        return {}, [f"{path}: expected a mapping of claim names to claims"]
    claims, problems = {}, []
    for name, fields in entries.items():
        try:
            claims[name] = parse_claim(name, fields)
        except ClaimFileError as error:
            problems.append(f"{path}: {error}")
    return dict(sorted(claims.items(), key=lambda item: item[1].number)), problems


CLAIM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a name that is never a path


def parse_claim(name: str, fields: dict) -> Claim:
    """A claim from its YAML entry; ClaimFileError naming the claim and each wrong key."""
    if not isinstance(name, str) or not CLAIM_NAME.fullmatch(name):
        raise ClaimFileError(f"claim {name!r}: a name is lowercase letters, digits, '-' and '_'")
    if not isinstance(fields, dict):
        raise ClaimFileError(f"claim {name!r}: expected a mapping of keys, got {fields!r}")
    required = ("number", "text", "source", "experiment", "anchor", "why", "primary")
    problems = []
    missing = [k for k in required if k not in fields]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    unknown = sorted(set(fields) - {*required, "secondary", "extra_cells", "readings"})
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    extra_cells = fields.get("extra_cells") or []
    if not isinstance(extra_cells, list) or not all(isinstance(e, str) for e in extra_cells):
        problems.append("extra_cells must be a list of experiment names")
    measures = [fields["primary"]] if "primary" in fields else []
    n_secondary = len(fields.get("secondary") or [])
    parsed = parse_each(
        name, parse_measure, [*measures, *(fields.get("secondary") or [])], problems
    )
    readings = parse_each(
        name,
        lambda claim, r: parse_reading(claim, r, n_secondary),
        fields.get("readings") or [],
        problems,
    )
    if problems:
        raise ClaimFileError(f"claim {name!r}: {'; '.join(problems)}")
    base = {k: fields[k] for k in required if k != "primary"}
    return Claim(
        name=name,
        **base,
        primary=parsed[0],
        secondary=tuple(parsed[1:]),
        extra_cells=tuple(extra_cells),
        readings=tuple(readings),
    )


def parse_each(name: str, parse, entries: list, problems: list[str]) -> list:
    """Each entry parsed; what is wrong with one goes into `problems`, so all are named."""
    parsed = []
    for entry in entries:
        try:
            parsed.append(parse(name, entry))
        except ClaimFileError as error:
            problems.append(str(error).removeprefix(f"claim {name!r}: "))
    return parsed


def parse_reading(claim: str, fields: dict, n_secondary: int) -> Reading:
    try:
        reading = Reading(**fields)
    except TypeError as error:
        raise ClaimFileError(f"claim {claim!r}: a reading: {error}") from None
    if reading.kind not in READING_KINDS:
        known = " | ".join(READING_KINDS)
        raise ClaimFileError(f"claim {claim!r}: reading kind {reading.kind!r}; known: {known}")
    index = reading.secondary
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_secondary:
        raise ClaimFileError(
            f"claim {claim!r}: a reading's secondary must be 0..{n_secondary - 1} (got {index!r})"
        )
    return reading


def parse_measure(claim: str, fields: dict) -> Measure:
    if not isinstance(fields, dict):
        raise ClaimFileError(f"claim {claim!r}: a measure must be a mapping, got {fields!r}")
    try:
        measure = Measure(**fields)
    except TypeError as error:
        raise ClaimFileError(f"claim {claim!r}: {error}") from None
    if not isinstance(measure.args, dict):
        raise ClaimFileError(f"claim {claim!r}: args must be a mapping")
    for key in ("treatment", "control"):
        arm = getattr(measure, key)
        parts = arm if isinstance(arm, list) else [arm]
        if not parts or not all(isinstance(part, dict) for part in parts):
            raise ClaimFileError(f"claim {claim!r}: {key} must be a mapping or a list of mappings")
    if measure.measure not in MEASURES:
        known = ", ".join(MEASURES)
        raise ClaimFileError(
            f"claim {claim!r}: unknown measure {measure.measure!r}; known: {known}"
        )
    if measure.direction not in DIRECTIONS or measure.ci not in CI_METHODS:
        raise ClaimFileError(
            f"claim {claim!r}: direction must be higher|lower and ci t|bca "
            f"(got {measure.direction!r}, {measure.ci!r})"
        )
    delta = measure.delta
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not delta > 0:
        raise ClaimFileError(f"claim {claim!r}: delta must be a number > 0 (got {delta!r})")
    try:  # a typo in args is refused now, not when a sweep is judged
        inspect.signature(MEASURES[measure.measure]).bind(None, None, None, None, **measure.args)
    except TypeError as error:
        raise ClaimFileError(f"claim {claim!r}: args of {measure.measure}: {error}") from None
    return measure


def claims_of(experiment: str) -> list[Claim]:
    """The claims judged on the sweep `experiment` makes; two may share one (claims 4, 10)."""
    return [c for c in load_claims().values() if c.experiment == experiment]


def get_claim(name: str) -> Claim:
    claims = load_claims()
    if name not in claims:
        raise UnknownClaim(f"unknown claim {name!r}; known: {', '.join(claims)}")
    return claims[name]
