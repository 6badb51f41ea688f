"""The claim base class, verdicts, and the study accessors every claim shares.

A claim is a small class whose metadata are class attributes (as a Quantus metric's are):
``id``, ``title``, ``metric``, ``test``, ``direction``, ``needs`` (the study phases it reads)
and defaults for ``alpha``, ``min_n``, ``sesoi`` (the smallest effect size of interest,
declared before any photo is seen), ``controls`` and ``layers``, plus named ``params``.
An instance may override any of them (``Claim(alpha=0.01)``, ``claim.with_(threshold=0.9)``);
unknown names are a ``TypeError``, so every field a claim declares is one it reads.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypedDict, cast

from xai_checks.cam.methods import method_title
from xai_checks.dataclass_schema import JSONRecord, about, keywords

if TYPE_CHECKING:
    from xai_checks.report.sections import ReportSection
    from xai_checks.study import ModelRun, StudyResult

__all__ = [
    "VERDICT_LEGEND",
    "Claim",
    "ClaimRecord",
    "EffectRecord",
    "MultiplicityRecord",
    "PowerRecord",
    "Reason",
    "ReasonRecord",
    "Status",
    "TippingRecord",
    "Verdict",
    "VerdictRecord",
    "VerdictRow",
    "control_runs",
    "method_name",
    "model_name",
    "under_test",
]


class Status(StrEnum):
    SUPPORTED = "SUPPORTED"
    REFUTED = "REFUTED"
    INCONCLUSIVE = "INCONCLUSIVE"
    CONFOUNDED = "CONFOUNDED"

    def __str__(self) -> str:
        return self.value


#: what each verdict means: the one text the terminal table, the report and the docs show
#: (a test keeps the README's copy equal to it)
VERDICT_LEGEND: dict[str, str] = {
    Status.SUPPORTED.value: "the effect, and what is left of it beyond each control, is shown "
    "to reach the smallest effect of interest (SESOI): the lower bound of its 90% CI is at or "
    "above it",
    Status.REFUTED.value: "the effect is shown smaller than the SESOI",
    Status.CONFOUNDED.value: "the effect is established, but what is left of it beyond a "
    "control is shown smaller than the SESOI: the control explains it",
    Status.INCONCLUSIVE.value: "too few photos, or a CI still straddles the SESOI",
}


class Reason(str):
    """One reason for a verdict: its text, plus a stable ``code`` a program can match.

    A ``str`` subclass, so ``"; ".join(verdict.reasons)`` and ``"x" in reason`` keep working;
    ``to_dict()`` gives the structured form written to JSON.
    """

    code: str

    def __new__(cls, code: str, text: str) -> Reason:
        obj = super().__new__(cls, text)
        obj.code = code
        return obj

    @property
    def text(self) -> str:
        return str.__str__(self)

    def to_dict(self) -> ReasonRecord:
        return {"code": self.code, "text": self.text}

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reason, (self.code, self.text))


def method_name(study: StudyResult | None) -> str:
    """The CAM method the study used, as people write it (from the study's config)."""
    method = getattr(getattr(study, "config", None), "method", None) or "gradcam"
    return method_title(str(method))


def under_test(study: StudyResult) -> ModelRun:
    """The model under test (its role is explicit in the study)."""
    return study.under_test


def control_runs(study: StudyResult) -> dict[str, ModelRun]:
    """The named controls (e.g. ``"untrained"``, the model's own class re-initialised)."""
    return dict(study.controls)


def model_name(study: StudyResult | None) -> str:
    """The architecture of the model under test, as recorded in the study."""
    if study is None or not study.runs:
        return "the model"
    run = under_test(study)
    arch = getattr(run, "model_class", None) or run.weights.get("arch")
    return str(arch) if arch else "the model"


#: a count: an integer at or above zero
Count = Annotated[int, keywords(minimum=0)]


@dataclass(frozen=True)
class VerdictRow(JSONRecord):
    """Verdict.row(): the one row the terminal table, claims.json, junit properties and the
    report show.
    """

    SCHEMA_DEF: ClassVar[str] = "verdict_row"

    claim: str
    status: Status
    n: int = field(metadata=about("independent photos (the unit of analysis)", minimum=0))
    n_photos: int | None = field(
        default=None,
        metadata=about(
            "photos that reached the claim; n is the deciding effect's, at most this", minimum=0
        ),
    )
    n_unit: str | None = None
    effect_name: str | None = None
    effect_n: int | None = field(
        default=None,
        metadata=about("photos behind the deciding effect (equal to n)", minimum=0),
    )
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    sesoi: float | None = None
    tipping_sesoi: float | None = field(
        default=None,
        metadata=about(
            "the SESOI at which the verdict would change (SUPPORTED: up to it; REFUTED or "
            "CONFOUNDED: above it; null when INCONCLUSIVE)"
        ),
    )
    p: float | None = None
    p_holm: float | None = None
    mde: float | None = None
    power_statement: str | None = None


class ReasonRecord(TypedDict):
    """One reason for a verdict: a stable code a program can match, and its text."""

    code: str
    text: str


class EffectRecord(TypedDict, total=False):
    """The headline effect: estimate with its bootstrap CI (null bounds where no sampling CI
    applies), n of independent photos, the test.

    The keys the schema names; the writer adds the estimate's other figures
    (``stats.EffectEstimate.to_dict``) and which effect decided."""

    name: str | None
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float | None
    n: Annotated[int | None, keywords(minimum=0)]
    unit_of_analysis: str


class PowerRecord(TypedDict, total=False):
    """The smallest true effect this n shows to reach the claim's SESOI with 80% power (mde =
    SESOI + the detection margin), against the size the calibration is powered for
    (powered_for, 2x the SESOI), and a sentence saying so."""

    mde: float | None
    powered_for: float | None
    power: float | None
    n: Annotated[int | None, keywords(minimum=0)]
    sesoi: float | None
    statement: str


class MultiplicityRecord(TypedDict, total=False):
    """How the run's claims were corrected together: method holm (family, m, p, p_adjusted) or
    none (note)."""

    method: Literal["holm", "none"]
    family: list[str]
    m: Count
    p: float | None
    p_adjusted: float | None
    note: str


class TippingRecord(TypedDict, total=False):
    """The SESOI at which the verdict would change: sesoi (for this verdict), supported_up_to,
    negative_above."""

    sesoi: float | None
    supported_up_to: float | None
    negative_above: float | None
    note: str


@dataclass(frozen=True, kw_only=True)
class ClaimRecord(JSONRecord):
    """Claim.to_dict(): the claim as it was evaluated, with its fields and params."""

    id: str = field(metadata=about(schema={"minLength": 1}))
    title: str = ""
    hypothesis: str
    metric: str = ""
    test: str = ""
    direction: str = ""
    needs: list[str] = field(default_factory=list)
    layers: list[str] | None = None
    alpha: float = field(
        default=0.05, metadata=about(schema={"exclusiveMinimum": 0, "exclusiveMaximum": 1})
    )
    min_n: Count = 1
    sesoi: float = 0.0
    controls: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class VerdictRecord(JSONRecord):
    """Verdict.to_dict(): one claim's verdict with every figure behind it."""

    SCHEMA_DEF: ClassVar[str] = "verdict"

    claim: ClaimRecord
    status: Status
    reasons: list[str] = field(metadata=about(schema={"items": {"$ref": "#/$defs/reason"}}))
    reasons_structured: list[ReasonRecord] = field(default_factory=list)
    n: Count
    n_photos: Count | None = None
    drops: dict[str, Count] = field(
        default_factory=dict, metadata=about("photos left out of n, by cause")
    )
    tipping: TippingRecord | None = None
    sensitivity: dict[str, Any] | None = field(
        default=None,
        metadata=about(
            "dropped photos scored at the worst case for the verdict (rule), each affected "
            "effect rescored (effects), and whether the verdict survives"
        ),
    )
    row: VerdictRow | None = field(default=None, metadata=about(omit_none=True))
    effect: EffectRecord | None = None
    power: PowerRecord | None = None
    multiplicity: MultiplicityRecord | None = None
    p_value: float | None = field(
        default=None,
        metadata=about(
            "the claim-level p-value SUPPORTED rests on (the largest p of the tests that must "
            "all pass: each effect's minimal-effect test against the SESOI); Holm adjusts it"
        ),
    )
    tests: dict[str, Any]
    medians: dict[str, Any] = field(default_factory=dict)
    controls: dict[str, Any] = field(default_factory=dict)
    insufficient: bool = False


@dataclass
class Verdict:
    """The outcome of a claim on a study's numbers.

    ``n`` counts independent photos (the unit of analysis), never reused mosaics or steps:
    the photos the deciding effect uses (``n_photos`` those that reached the claim, ``drops``
    the rest by cause). ``effect`` holds the deciding effect with its bootstrap CI; ``power``
    says the smallest effect this n could detect; ``multiplicity`` how the run's family of
    claims was corrected.
    """

    claim: Claim
    status: Status
    reasons: list[Reason]
    n: int
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    medians: dict[str, dict[str, float]] = field(default_factory=dict)
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: INCONCLUSIVE only because there were too few photos (a test may skip on this)
    insufficient: bool = False
    hypothesis: str = ""
    effect_size: dict[str, Any] | None = None
    power: PowerRecord | None = None
    multiplicity: MultiplicityRecord | None = None
    #: the claim-level p-value SUPPORTED rests on (the largest p of the tests that must all
    #: pass, an intersection-union test: each effect's minimal-effect test against the SESOI);
    #: Holm across a run's claims adjusts this one
    p_value: float | None = None
    #: the photos that reached the claim (``n`` is the deciding effect's photos, at most this)
    n_photos: int | None = None
    #: photos left out of ``n``, by cause
    drops: dict[str, int] = field(default_factory=dict)
    #: the SESOI at which the verdict would change (see ``claims._rules.conclude``)
    tipping: TippingRecord | None = None
    #: dropped photos scored at the worst case for the verdict, and whether it survives (see
    #: ``claims._rules.worst_case``); None when no deciding effect dropped a photo
    sensitivity: dict[str, Any] | None = None

    def add(self, code: str, text: str) -> None:
        """Append a structured reason."""
        self.reasons.append(Reason(code, text))

    @property
    def primary(self) -> dict[str, Any] | None:
        """The claim's own test result."""
        return self.tests.get("primary")

    @property
    def effect(self) -> float | None:
        """The headline effect estimate (the one with a CI), else the primary test's effect."""
        if self.effect_size is not None and self.effect_size.get("estimate") is not None:
            value = self.effect_size["estimate"]
            return None if value is None else float(value)
        primary = self.primary
        return None if primary is None else primary.get("effect")

    @property
    def decisive_p(self) -> float | None:
        """The p-value a SUPPORTED verdict rests on (for Holm across a run's claims)."""
        p = self.p_value
        if p is None:
            return None
        p = float(p)
        return p if math.isfinite(p) else None

    def row(self) -> dict[str, Any]:
        """One flat row: the same figures in the terminal table, claims.json, junit, report."""
        return self._row().to_dict()

    def _row(self) -> VerdictRow:
        eff = self.effect_size or {}
        power = self.power or {}
        mult = self.multiplicity or {}
        return VerdictRow(
            claim=self.claim.id,
            status=self.status,
            n=self.n,
            n_photos=self.n if self.n_photos is None else self.n_photos,
            n_unit=eff.get("unit_of_analysis", "photos"),
            effect_name=eff.get("name"),
            # the photos behind the effect (fewer than n when some had no finite value)
            effect_n=eff.get("n"),
            effect=eff.get("estimate"),
            ci_low=eff.get("ci_low"),
            ci_high=eff.get("ci_high"),
            confidence=eff.get("confidence"),
            sesoi=self.claim.sesoi,
            tipping_sesoi=(self.tipping or {}).get("sesoi"),
            p=self.p_value,
            p_holm=mult.get("p_adjusted"),
            mde=power.get("mde"),
            power_statement=power.get("statement"),
        )

    def record(self) -> VerdictRecord:
        """The verdict as written to ``results.json`` and ``claims.json``."""
        claim = self.claim.record()
        if self.hypothesis:
            claim = dataclasses.replace(claim, hypothesis=self.hypothesis)
        return VerdictRecord(
            claim=claim,
            status=self.status,
            reasons=[str(r) for r in self.reasons],
            reasons_structured=[
                r.to_dict() if isinstance(r, Reason) else {"code": "", "text": str(r)}
                for r in self.reasons
            ],
            n=self.n,
            n_photos=self.n if self.n_photos is None else self.n_photos,
            drops=self.drops,
            tipping=self.tipping,
            sensitivity=self.sensitivity,
            row=self._row(),
            effect=cast(EffectRecord | None, self.effect_size),
            power=self.power,
            multiplicity=self.multiplicity,
            p_value=self.p_value,
            tests=self.tests,
            medians=self.medians,
            controls=self.controls,
            insufficient=self.insufficient,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def summary(self) -> str:
        return f"{self.claim.id}: {self.status.value} ({'; '.join(self.reasons)})"


class Claim:
    """Base class of every claim (built-in or third-party).

    Subclasses set the class attributes and implement :meth:`evaluate`; they may override
    :meth:`hypothesis_for` (text built from the claim's params and the study's config) and
    :meth:`report_section`.
    """

    #: stable identifier (also the entry-point name)
    id: ClassVar[str] = ""
    #: short title for tables and the report
    title: ClassVar[str] = ""
    #: the per-photo number the claim reads
    metric: ClassVar[str] = ""
    #: the claim's own test
    test: ClassVar[str] = ""
    direction: ClassVar[str] = "increasing"
    #: the study phases this claim reads (running one claim computes only these)
    needs: ClassVar[tuple[str, ...]] = ("ratio",)
    #: the fewest layers the claim can be judged on (a trend over depth needs 3); fewer is a
    #: usage error before the study reads a photo
    min_layers: ClassVar[int] = 1
    #: named parameters and their defaults; instances may override them
    defaults: ClassVar[dict[str, Any]] = {}

    # Per-instance fields (the class value is the default).
    alpha: float = 0.05
    min_n: int = 5
    #: smallest effect size of interest, in the units of the claim's effect
    sesoi: float = 0.0
    controls: tuple[str, ...] = ()
    #: layers shallow to deep; ``None``: the layers the study ran
    layers: tuple[str, ...] | None = None

    _FIELDS: ClassVar[tuple[str, ...]] = ("alpha", "min_n", "sesoi", "controls", "layers")

    def __init__(self, **overrides: Any) -> None:
        cls = type(self)
        if not cls.id:
            raise TypeError(f"{cls.__name__} must set a class attribute 'id'")
        unknown = set(overrides) - set(self._FIELDS) - set(cls.defaults)
        if unknown:
            known = ", ".join([*self._FIELDS, *cls.defaults])
            raise TypeError(f"claim {cls.id!r} has no field(s) {sorted(unknown)}; known: {known}")
        self.params: dict[str, Any] = dict(cls.defaults)
        for key, value in overrides.items():
            if key in self._FIELDS:
                setattr(self, key, value)
            else:
                self.params[key] = value
        if self.layers is not None:
            self.layers = tuple(self.layers)
        self.controls = tuple(self.controls)
        if not (isinstance(self.alpha, float | int) and 0.0 < float(self.alpha) < 1.0):
            raise ValueError(f"alpha must be in (0, 1); got {self.alpha!r}")
        if int(self.min_n) < 1:
            raise ValueError(f"min_n must be >= 1; got {self.min_n!r}")

    # ------------------------------------------------------------------ data

    def with_(self, **changes: Any) -> Claim:
        """A copy with some fields or params changed (e.g. ``alpha``, ``threshold``)."""
        current: dict[str, Any] = {name: getattr(self, name) for name in self._FIELDS}
        current.update(self.params)
        current.update(changes)
        return type(self)(**current)

    def bind(self, study: StudyResult) -> Claim:
        """This claim with ``layers`` resolved to the study's (when left to the study)."""
        if self.layers is not None:
            return self
        bound = copy.copy(self)
        bound.params = dict(self.params)
        bound.layers = self.default_layers(study)
        return bound

    def default_layers(self, study: StudyResult) -> tuple[str, ...]:
        """The layers this claim reads when the user does not name them: the study's."""
        return tuple(under_test(study).layers) if study.runs else tuple(study.config.layers)

    @property
    def hypothesis(self) -> str:
        """The hypothesis in words, from the claim's own params (no study yet)."""
        return self.hypothesis_for(None)

    def hypothesis_for(self, study: StudyResult | None) -> str:
        """The hypothesis in words for this study (method, model and layers as used)."""
        return self.title

    def record(self) -> ClaimRecord:
        """The claim as written to JSON."""
        return ClaimRecord(
            id=self.id,
            title=self.title,
            hypothesis=self.hypothesis,
            metric=self.metric,
            test=self.test,
            direction=self.direction,
            needs=list(self.needs),
            layers=list(self.layers) if self.layers is not None else None,
            alpha=self.alpha,
            min_n=self.min_n,
            sesoi=self.sesoi,
            controls=list(self.controls),
            params=self.params,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Claim)
            and type(other) is type(self)
            and other.to_dict() == self.to_dict()
        )

    def __hash__(self) -> int:
        return hash((type(self), self.id))

    def __repr__(self) -> str:
        changed = {
            k: v
            for k, v in [*((f, getattr(self, f)) for f in self._FIELDS), *self.params.items()]
            if getattr(type(self), k, type(self).defaults.get(k, object())) != v
        }
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ behaviour

    def verdict(self, study: StudyResult, n: int) -> Verdict:
        """A fresh INCONCLUSIVE verdict for this claim on ``study`` (evaluators fill it)."""
        return Verdict(self, Status.INCONCLUSIVE, [], n, hypothesis=self.hypothesis_for(study))

    def evaluate(self, study: StudyResult) -> Verdict:
        """The verdict of this claim on ``study``'s numbers."""
        raise NotImplementedError

    def report_section(self, study: StudyResult, verdict: Verdict) -> ReportSection | None:
        """The claim's own section of the report, or None (the default): the report then shows
        the section it registers for this claim's id, else the verdict row and reasons."""
        return None
