"""The study phase base class: a unit that computes per-photo numbers for claims to read.

A phase is a small class, registered like a claim (entry-point group ``xai_checks.phases``):

* ``name`` (also the entry-point name) and ``needs``, the phases whose output it reads;
* ``options``: named settings and their defaults (``StudyConfig.phase_options[name]``
  overrides them);
* :meth:`Phase.run` runs over the photos in batches and returns the phase's output (its
  per-photo records), which :meth:`Phase.attach` stores on the study;
* :meth:`Phase.to_json` is its JSON form in ``results.json`` and :meth:`Phase.schema` the JSON
  Schema fragment that form follows;
* :meth:`Phase.report_section` draws its figure for the report.

A phase that needs new per-photo data is then one file plus one entry-point line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from xai_checks.data import PhotoSet
    from xai_checks.distributed import Shard
    from xai_checks.models import ModelTrace
    from xai_checks.report.sections import ReportSection
    from xai_checks.study import StudyConfig, StudyResult

__all__ = ["Phase", "PhaseContext"]


@dataclass
class PhaseContext:
    """What a phase's :meth:`Phase.run` reads: the models, photos, config and this rank's shard.

    ``name`` is the model under test's name; ``study`` holds what the phases before this one
    produced (``None`` only while the ratio phase, which builds it, runs); ``skipped`` the
    photos no phase may use (they did not load).
    """

    model: nn.Module
    name: str
    controls: Mapping[str, nn.Module]
    trace: ModelTrace
    photoset: PhotoSet
    config: StudyConfig
    shard: Shard
    study: StudyResult | None = None
    skipped: set[str] = field(default_factory=set)
    progress: Callable[[str, int, int], None] | None = None
    #: the GPU pipeline's counts (captured-engine replays, device decoding, peak memory),
    #: filled by the ratio phase for the provenance
    pipeline: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> dict[str, nn.Module]:
        """The model under test first, then the controls, by name."""
        return {self.name: self.model, **self.controls}

    @property
    def result(self) -> StudyResult:
        """The study so far (every phase but the ratio phase runs after it exists)."""
        if self.study is None:
            raise RuntimeError("the study does not exist yet: the ratio phase builds it")
        return self.study


class Phase:
    """Base class of every study phase (built-in or third-party)."""

    #: stable identifier (also the entry-point name, and the name in ``StudyConfig.phases``)
    name: ClassVar[str] = ""
    #: a line for tables and the report
    title: ClassVar[str] = ""
    #: the phases whose output this one reads (they run first)
    needs: ClassVar[tuple[str, ...]] = ("ratio",)
    #: named settings and their defaults (``StudyConfig.phase_options[name]`` overrides them)
    options: ClassVar[dict[str, Any]] = {}

    def settings(self, config: StudyConfig) -> dict[str, Any]:
        """This phase's options for ``config``: the defaults, then the config's overrides."""
        given = dict(config.phase_options.get(self.name, {}))
        unknown = set(given) - set(self.options)
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ValueError(
                f"phase {self.name!r} has no option(s) {sorted(unknown)}; known: {known}"
            )
        return {**self.options, **given}

    def run(self, context: PhaseContext) -> Any:
        """Compute this phase's output (per-photo records) over the photos."""
        raise NotImplementedError

    def attach(self, study: StudyResult, output: Any) -> None:
        """Store ``output`` on the study (default: ``study.phase_results[name]``)."""
        study.phase_results[self.name] = output

    def output(self, study: StudyResult) -> Any:
        """This phase's output in ``study``, or ``None`` when it did not run."""
        return study.phase_results.get(self.name)

    def to_json(self, study: StudyResult) -> Any:
        """The JSON form of this phase's output (plain lists, dicts, numbers, or result records
        whose ``to_dict()`` writes them; ``None``: none)."""
        out = self.output(study)
        if out is None:
            return None
        to_dict = getattr(out, "to_dict", None)
        return to_dict() if callable(to_dict) else out

    def schema(self) -> dict[str, Any]:
        """The JSON Schema fragment :meth:`to_json`'s output follows (``null`` always allowed)."""
        return {"type": ["object", "null"]}

    def report_section(self, study: StudyResult) -> ReportSection | None:
        """The phase's own figure for the report (``None``: the claims' sections draw it)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
