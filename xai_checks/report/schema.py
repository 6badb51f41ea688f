"""``results.json``: the machine-readable twin of ``report.html``.

The document's schema is one JSON Schema file shipped in the package,
``xai_checks/report/results.schema.json`` (draft 2020-12, ``xai-checks/results`` v1); read it
for every field's meaning. :func:`validate_results` checks a document against it with
``jsonschema``; :func:`build_results` builds the document from a study and its verdicts.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, cast

import jsonschema

from xai_checks._util import jsonable
from xai_checks.claims.base import VerdictRecord
from xai_checks.dataclass_schema import JSONRecord, about
from xai_checks.phases import registered_phases
from xai_checks.result_records import (
    ControlSeedsRecord,
    GridPGRecord,
    LayerNumbers,
    ModelRecord,
    PhotoCounts,
    PhotosetRecord,
    ProvenanceRecord,
    SanityRecord,
    SkippedPhoto,
    StatisticalTestRecord,
    WeightsRecord,
)

if TYPE_CHECKING:
    from xai_checks.claims.base import Verdict
    from xai_checks.study import StudyResult

__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "BottomLineRecord",
    "ResultsDocument",
    "SchemaError",
    "build_results",
    "cpu_model",
    "jsonable",
    "packaged_schema",
    "results_document",
    "results_schema",
    "validate_results",
]

SCHEMA_ID = "xai-checks/results"
SCHEMA_VERSION = 1
#: the schema's file name inside the ``xai_checks.report`` package
SCHEMA_FILE = "results.schema.json"


@functools.cache
def _schema_text() -> str:
    return resources.files("xai_checks.report").joinpath(SCHEMA_FILE).read_text("utf-8")


def packaged_schema() -> dict[str, Any]:
    """The packaged schema file as it is (a fresh copy), without the phases' fragments."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def results_schema() -> dict[str, Any]:
    """The JSON Schema of ``results.json``: the packaged file, with each registered phase's
    fragment (``Phase.schema()``) under ``phases.<name>`` for the phases that write there."""
    schema = packaged_schema()
    slot = schema["properties"]["phases"].setdefault("properties", {})
    for phase in registered_phases():
        if not getattr(phase, "json_key", ""):
            slot[phase.name] = phase.schema()
    return schema


def _validator() -> jsonschema.protocols.Validator:
    return _validator_for(tuple(type(p).__qualname__ for p in registered_phases()))


@functools.cache
def _validator_for(phases: tuple[str, ...]) -> jsonschema.protocols.Validator:
    schema = results_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(inline_local_refs(schema))


#: keywords that annotate and never validate: a ``$ref`` beside only these is its target
_ANNOTATIONS = frozenset({"$comment", "default", "description", "examples", "title"})
_LOCAL = "#/$defs/"


def inline_local_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each ``{"$ref": "#/$defs/NAME"}`` replaced by a copy of that definition.

    It validates the same documents with the same errors: a reference beside other validating
    keywords becomes ``allOf`` of the two, as draft 2020-12 reads it, and a definition that
    refers back to itself keeps its reference (``$defs`` stay in the root for it). jsonschema
    resolves a reference anew at every value it checks, which is most of its time on a
    document with a row per photo."""
    definitions = schema.get("$defs", {})

    def inline(node: Any, inside: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, inside) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        name = ref[len(_LOCAL) :] if isinstance(ref, str) and ref.startswith(_LOCAL) else None
        if name is None or name not in definitions or name in inside:
            return {key: inline(value, inside) for key, value in node.items()}
        target = inline(definitions[name], (*inside, name))
        rest = {key: inline(value, inside) for key, value in node.items() if key != "$ref"}
        if set(rest) <= _ANNOTATIONS and isinstance(target, dict):
            return {**target, **rest}
        return {"allOf": [target], **rest}

    return cast(dict[str, Any], inline(schema, ()))


class SchemaError(ValueError):
    """A results document that does not follow the schema; ``errors`` lists why."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        shown = "; ".join(self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"results do not follow {SCHEMA_ID} v{SCHEMA_VERSION}: {shown}{more}")


def validate_results(doc: Any) -> None:
    """Raise :class:`SchemaError` unless ``doc`` (a loaded ``results.json``) follows the schema.

    Also refuses NaN and infinity, which JSON cannot hold (the schema's ``number`` cannot say so).
    """
    errors = [
        f"{e.json_path}: {e.message}"
        for e in sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]
    try:
        json.dumps(doc, allow_nan=False)
    except ValueError:
        errors.append("$: holds NaN or infinity (write null for a missing number)")
    except TypeError as exc:
        errors.append(f"$: not JSON data ({exc})")
    if errors:
        raise SchemaError(errors)


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


_VERSION_KEYS = ("xai_checks", "python", "torch", "torchvision", "captum", "numpy", "scipy")


def _provenance(study: StudyResult, extra: Mapping[str, Any]) -> ProvenanceRecord:
    prov = dict(study.provenance or {})
    versions = {k: prov.get(k) for k in _VERSION_KEYS if k in prov}
    if "matplotlib" not in versions:
        import matplotlib

        versions["matplotlib"] = matplotlib.__version__
    command = extra.get("command")
    if isinstance(command, list | tuple):
        import shlex

        command = shlex.join(str(c) for c in command)
    timings: dict[str, float | None] = dict(study.timings or {})
    return ProvenanceRecord(
        versions={k: None if v is None else str(v) for k, v in versions.items()},
        platform=prov.get("platform"),
        processor=prov.get("processor"),
        cpu=prov.get("cpu") or cpu_model(),
        device=prov.get("device"),
        gpu=prov.get("gpu"),
        cuda=prov.get("cuda"),
        threads=prov.get("threads"),
        seed=study.config.seed,
        run_time_s=timings.get("total"),
        timings_s=timings,
        command=None if command is None else str(command),
        models={name: WeightsRecord.of(run.weights) for name, run in study.runs.items()},
        gpu_pipeline=prov.get("gpu_pipeline"),
    )


def _photoset(study: StudyResult) -> PhotosetRecord:
    ps = dict(study.photoset or {})
    records = study.under_test.records
    classes = Counter(str(r.get("label_name", r.get("label"))) for r in records)
    return PhotosetRecord(
        name=str(ps.get("name", "unknown")),
        layout=ps.get("layout"),
        root=ps.get("root"),
        counts=PhotoCounts(
            listed=ps.get("n_listed"),
            used=int(ps.get("n_used", len(records))),
            skipped=len(study.skipped or []),
            classes=len(classes),
        ),
        classes=dict(sorted(classes.items())),
        skipped=[
            SkippedPhoto(file=str(s.get("file", "")), reason=str(s.get("reason", "")))
            for s in (study.skipped or [])
        ],
    )


def _tests(verdicts: Sequence[Verdict]) -> list[StatisticalTestRecord]:
    out: list[StatisticalTestRecord] = []
    for verdict in verdicts:
        claim = verdict.claim.id
        models = list(verdict.medians)
        main = models[0] if models else None
        for name, result in verdict.tests.items():
            out.append(
                StatisticalTestRecord(claim=claim, name=name, model=main, result=result or {})
            )
        for name, control in verdict.controls.items():
            if isinstance(control, dict) and isinstance(control.get("test"), dict):
                out.append(
                    StatisticalTestRecord(
                        claim=claim,
                        name=f"control:{name}",
                        model=control.get("model"),
                        result=control["test"],
                    )
                )
    return out


def _phases(study: StudyResult) -> dict[str, Any]:
    """Every registered phase's JSON form: built-ins at their top-level keys, the others under
    ``phases`` (only those that ran)."""
    out: dict[str, Any] = {"phases": {}}
    for phase in registered_phases():
        key = getattr(phase, "json_key", "")
        if key:
            out[key] = phase.to_json(study)
        elif phase.output(study) is not None:
            out["phases"][phase.name] = phase.to_json(study)
    return out


class BottomLineRecord(TypedDict):
    """claims.bottom_line(verdicts): one reconciled conclusion of the run's verdicts (optional:
    absent when no claim was evaluated)."""

    status: Literal["holds", "does not hold", "undermined", "mixed", "not judged"]
    text: str
    points: list[str]
    multiplicity: NotRequired[str]


@dataclass(frozen=True, kw_only=True)
class ResultsDocument(JSONRecord):
    """The machine-readable twin of report.html. UTF-8 JSON, no NaN or infinity: a missing or
    non-finite number is null. Version bumps: adding an optional field keeps schema_version;
    renaming, removing or changing the meaning of a field bumps it. Sub-objects allow extra
    keys, so a newer writer's additions do not break older readers; the top level and the
    core fields are strict.

    Fields typed ``Any`` have hand-kept schemas (``scripts/results_schema_hand_kept.json``).
    """

    schema: str = field(metadata=about(schema={"const": SCHEMA_ID}))
    schema_version: int = field(metadata=about(schema={"const": SCHEMA_VERSION}))
    generated: str = field(
        metadata=about(
            "when the report was written (UTC, ISO 8601)", schema={"format": "date-time"}
        )
    )
    provenance: ProvenanceRecord
    config: Any
    photoset: PhotosetRecord
    phases: dict[str, dict[str, Any] | None] = field(
        default_factory=dict,
        metadata=about(
            "phase name -> the JSON form of a registered phase that has no top-level key "
            "(Phase.to_json; its schema fragment, Phase.schema(), is merged in here when the "
            "document is validated)"
        ),
    )
    models: dict[str, ModelRecord] = field(
        metadata=about("model name -> its weights, layers and one row per photo, in study order")
    )
    gridpg: GridPGRecord | None = field(
        metadata=about("The grid pointing game; null when the phase did not run.")
    )
    sanity: SanityRecord | None
    agreement: LayerNumbers | None = field(metadata=about("layer -> max |native - captum|"))
    control_seeds: ControlSeedsRecord | None = None
    tests: list[StatisticalTestRecord] = field(
        metadata=about(
            "every statistical test that was run; name is the key in the verdict's tests, or "
            "control:<name>"
        )
    )
    verdicts: list[VerdictRecord]
    extra: dict[str, Any] = field(
        metadata=about(
            "whatever the caller passed as extra (its 'command' is shown as the command line)"
        )
    )
    bottom_line: BottomLineRecord | None = field(default=None, metadata=about(omit_none=True))


def results_document(
    study: StudyResult, verdicts: Sequence[Verdict], *, extra: Mapping[str, Any] | None = None
) -> ResultsDocument:
    """The typed ``results.json`` document for a study and its verdicts."""
    extra = dict(extra or {})
    bottom: BottomLineRecord | None = None
    if verdicts:
        from xai_checks.claims import bottom_line, multiplicity_note

        bottom = cast(
            BottomLineRecord,
            {**bottom_line(verdicts), "multiplicity": multiplicity_note(verdicts)},
        )
    return ResultsDocument(
        schema=SCHEMA_ID,
        schema_version=SCHEMA_VERSION,
        generated=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        provenance=_provenance(study, extra),
        config=study.config.to_dict(),
        photoset=_photoset(study),
        **_phases(study),
        control_seeds=(
            None if study.control_seeds is None else ControlSeedsRecord.of(study.control_seeds)
        ),
        tests=_tests(verdicts),
        verdicts=[v.record() for v in verdicts],
        extra=extra,
        bottom_line=bottom,
    )


def build_results(
    study: StudyResult, verdicts: Sequence[Verdict], *, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``results.json`` document (JSON-safe) for a study and its verdicts."""
    return results_document(study, verdicts, extra=extra).to_dict()
