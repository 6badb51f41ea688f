"""The state of one pytest run of the xai-checks plugin, kept on the config.

Follows pytest-benchmark's shape: :mod:`xai_checks.plugin` holds hooks, options and fixtures;
this module holds the run's state (:class:`XaiSession`: settings, studies, verdicts, the
baseline check); :mod:`xai_checks.table` prints the table.

Under pytest-xdist the run is the same as serial:

* one study per settings for the whole run: the first worker that needs it computes it under
  a file lock into a folder the controller made (``workerinput``), keyed by a hash of
  everything that decides its numbers; the other workers load it;
* each worker sends its verdicts to the controller (``workeroutput``, read in
  ``pytest_testnodedown``, as pytest-benchmark does), which prints the table, writes
  ``claims.json`` and checks the baseline once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from xai_checks.baseline import (
    BaselineError,
    compare_with_baseline,
    coverage_problems,
    load_baseline,
)

__all__ = ["Settings", "XaiSession", "comparable", "compare_with_baseline"]

#: the baseline settings that must match (missing keys take these defaults, so baselines
#: written before a key existed stay comparable when the key is at its default)
_KEY_DEFAULTS: dict[str, Any] = {
    "data": "imagenet-samples",
    "labels": [],
    "weights": "msra",
    "control": "random",
    "limit": 200,
    "seed": 0,
    "alpha": 0.05,
    "layers": None,
    "model": None,
    "method": "gradcam",
    "control_model": None,
    "classes": None,
    "preprocess": None,
}


@dataclass
class Settings:
    """The plugin's options, resolved (see :mod:`xai_checks.options`).

    Each field is named after its option row (``labels``: ``label``, ``json_path``: ``json``);
    ``values`` holds every plugin option's value, from which :meth:`study_config` makes the
    study's config through the rows alone.
    """

    data: str
    labels: list[str]
    layout: str
    weights: str
    control: str
    alpha: float
    device: str
    limit: int | None  # ``--xai-limit auto`` is resolved at configure
    seed: int
    batch_size: int
    layers: tuple[str, ...] | None
    json_path: Path | None
    baseline: Path | None
    update_baseline: bool
    baseline_optional: bool
    tolerance: float
    strict: tuple[str, ...]
    #: the model, its layers, labels and preprocessing; None: the defaults
    model: str | None = None
    control_model: str | None = None
    method: str = "gradcam"
    classes: str | None = None
    #: every plugin option's value, keyed by row name (:func:`~xai_checks.options.plugin_values`)
    values: dict[str, Any] = field(default_factory=dict)
    data_note: str = ""

    def __post_init__(self) -> None:
        self.labels = list(self.labels or [])
        self.layout = self.layout or "auto"
        self.layers = tuple(self.layers) if self.layers else None
        self.json_path = Path(self.json_path) if self.json_path else None
        self.baseline = Path(self.baseline) if self.baseline else None
        self.update_baseline = bool(self.update_baseline)
        self.baseline_optional = bool(self.baseline_optional)
        self.strict = tuple(self.strict or ())
        self.method = self.method or "gradcam"

    @property
    def preprocess(self) -> dict[str, Any]:
        """The preprocessing options given (``Preprocess`` field -> value)."""
        from xai_checks.options import study_assignments

        return {
            path.partition(".")[2]: value
            for path, value in study_assignments(self.values).items()
            if path.startswith("preprocess.")
        }

    def study_config(
        self,
        *,
        layers: Sequence[str] | None,
        phases: Sequence[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        classes: Any = None,
    ) -> Any:
        """The study's config: these settings with the study ``overrides`` of a test (option
        names that reach the study: ``method``, ``channels_last``...) and the ``layers`` the
        ``xai_layers`` fixture chose (``None``: picked when the study runs); ``classes``: the
        photo set's class list.

        Raises :class:`~xai_checks.options.OptionError` for an override that is no study
        option, or a value the study rejects.
        """
        from xai_checks.options import OPTIONS, OptionError, study_config

        overrides = dict(overrides or {})
        known = {row.name for row in OPTIONS if isinstance(row.study, str)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise OptionError(
                f"{', '.join(map(repr, unknown))}: not a study option; the study takes "
                + ", ".join(sorted(known))
            )
        values = {**self.values, **{k: v for k, v in overrides.items() if v is not None}}
        values["layers"] = tuple(overrides.get("layers") or layers or ())
        return study_config(values, phases=phases, classes=classes)

    def key(self) -> dict[str, Any]:
        """What a baseline must match to be comparable."""
        out: dict[str, Any] = {
            "data": self.data,
            "labels": self.labels,
            "weights": self.weights,
            "control": self.control,
            "limit": self.limit,
            "seed": self.seed,
            "alpha": self.alpha,
            "layers": list(self.layers) if self.layers else None,
            "model": self.model,
            "method": self.method,
        }
        for name, value in (("control_model", self.control_model), ("classes", self.classes)):
            if value is not None:
                out[name] = value
        if self.preprocess:
            out["preprocess"] = self.preprocess
        if self.values.get("target", "true") != "true":
            out["target"] = self.values["target"]
        return out


def comparable(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    """The settings that differ between a run and a baseline (empty: comparable)."""
    keys = set(current) | set(baseline)
    diffs = []
    for key in sorted(keys):
        default = _KEY_DEFAULTS.get(key)
        a, b = current.get(key, default), baseline.get(key, default)
        if a != b:
            diffs.append(f"{key}: baseline {b!r}, this run {a!r}")
    return diffs


def fingerprint(obj: Any) -> str:
    """A short sha256 of a JSON-able description."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_digest(*objects: Any) -> str:
    """A sha256 of the files that define ``objects`` (classes, functions, or instances of a
    class): a model whose ``forward`` was edited keeps its class name and weights, so only its
    source tells a kept study that it answered for other code. An object with no source file
    (a builtin, a class typed into a REPL) adds its qualified name only."""
    import inspect

    files: set[str] = set()
    names: set[str] = set()
    for obj in objects:
        target = obj if inspect.isfunction(obj) or isinstance(obj, type) else type(obj)
        try:
            source = inspect.getsourcefile(target)
        except TypeError:  # a builtin, or a class whose module left sys.modules
            source = _file_of_methods(target)
        if source is None:
            names.add(f"{target.__module__}.{target.__qualname__}")
        else:
            files.add(str(Path(source).resolve()))
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode())
    for path in sorted(files):
        digest.update(path.encode())
        digest.update(_file_bytes_digest(path).encode())
    return digest.hexdigest()[:16]


def _file_of_methods(cls: Any) -> str | None:
    """The file a class's own functions were compiled from (``forward`` and the like)."""
    for value in vars(cls).values() if isinstance(cls, type) else ():
        code = getattr(value, "__code__", None)
        if code is not None and Path(code.co_filename).is_file():
            return str(code.co_filename)
    return None


def transform_digest(transform: Any) -> str | None:
    """The code of a user transform: a callable's source (:func:`source_digest`), or the file a
    ``FILE.py:factory`` / ``package.module:factory`` spec names, read without importing it."""
    if transform is None:
        return None
    if not isinstance(transform, str):
        return source_digest(transform)
    where = transform.rpartition(":")[0]
    if where.endswith(".py") or "/" in where:
        path: str | None = str(Path(where).expanduser().resolve())
    else:
        import importlib.util

        try:
            found = importlib.util.find_spec(where)
        except (ImportError, ValueError):
            found = None
        path = found.origin if found is not None else None
    return _file_bytes_digest(path)[:16] if path else f"unresolved {transform}"


def _file_bytes_digest(path: str) -> str:
    try:
        st = Path(path).stat()
    except OSError:
        return "missing"
    return _file_digest(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256, read once per (size, time) it has."""
    from xai_checks.cache import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return "unreadable"


def model_fingerprint(model: Any) -> dict[str, Any]:
    """Class, a checksum of the weights and of the code of every module class it is made of:
    what makes a model's numbers."""
    from xai_checks._util import state_digest

    modules = model.modules() if hasattr(model, "modules") else [model]
    return {
        "class": type(model).__qualname__,
        "weights": state_digest(model)[:16],
        "code": source_digest(*{type(m) for m in modules}),
    }


def photoset_fingerprint(photoset: Any) -> str:
    """Which photos, with which labels (names, not paths: a moved folder is the same set)."""
    samples = getattr(photoset, "samples", ())
    return fingerprint(
        sorted((Path(str(getattr(s, "path", s))).name, getattr(s, "label", None)) for s in samples)
    )


def photo_files(photoset: Any) -> list[tuple[str, int, int]]:
    """Each photo file's name, size and modification time: what says a photo changed on disk
    (the study fingerprint names photos; a study kept between runs also needs their bytes)."""
    out = []
    for s in getattr(photoset, "samples", ()):
        path = Path(str(getattr(s, "path", s)))
        try:
            st = path.stat()
        except OSError:
            out.append((path.name, -1, -1))
            continue
        out.append((path.name, st.st_size, st.st_mtime_ns))
    return sorted(out)


@functools.cache
def package_digest() -> str:
    """A sha256 of every file of the installed ``xai_checks`` package (code, templates,
    schema): a study kept between runs is reused only by the code that computed it."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _version_of(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "absent"


def library_versions() -> dict[str, str]:
    import numpy
    import scipy
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        # its transforms' defaults (antialiasing, interpolation) make the input
        "torchvision": _version_of("torchvision"),
        # float summation order, and so the last digits of some numbers, follow the threads
        "threads": str(torch.get_num_threads()),
        # and the kernels torch picks for the CPU's vector instructions (a clone on a shared
        # disk may be run from another machine)
        "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


class XaiSession:
    """Settings, studies, verdicts and the baseline check of one pytest run."""

    def __init__(self, config: Any, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.verdicts: dict[str, Any] = {}
        #: the run's marked claims (key -> claim id, marker overrides): Holm's family
        self.family: dict[str, tuple[str, dict[str, Any]]] = {}
        #: the family judged and corrected together, once (None: not yet)
        self.family_verdicts: dict[str, Any] | None = None
        self.studies: dict[str, dict[str, Any]] = {}
        self.phases: tuple[str, ...] | None = None
        #: the claims the run's tests mark (their layer needs are checked up front); empty when
        #: a test may ask for any claim
        self.claims: tuple[Any, ...] = ()
        self.lines: list[str] = []
        self.failures: list[str] = []
        self._results: dict[str, Any] = {}
        workerinput = getattr(config, "workerinput", None)
        self.worker: str | None = workerinput["workerid"] if workerinput else None
        self.cache_dir: Path | None = None
        if workerinput and workerinput.get("xai_cache_dir"):
            self.cache_dir = Path(workerinput["xai_cache_dir"])
        self._own_cache: Path | None = None

    # ------------------------------------------------------------------ xdist plumbing

    def configure_node(self, node: Any) -> None:
        """Controller: give each worker the shared study cache folder."""
        if self._own_cache is None:
            self._own_cache = Path(tempfile.mkdtemp(prefix="xai-checks-studies-"))
        node.workerinput["xai_cache_dir"] = str(self._own_cache)

    def worker_output(self) -> dict[str, Any]:
        """Worker: what the controller needs (execnet carries bytes; verdicts are pickled)."""
        return {
            "xai_verdicts": pickle.dumps(self.verdicts),
            "xai_studies": json.dumps(self.studies, default=str),
            "xai_family": json.dumps(sorted(self.family)),
        }

    def merge(self, output: Mapping[str, Any]) -> None:
        """Controller: take in one worker's verdicts and study notes."""
        if "xai_verdicts" in output:
            for key, verdict in pickle.loads(output["xai_verdicts"]).items():
                self.verdicts.setdefault(key, verdict)
        if "xai_family" in output:  # the claims selected: the baseline check needs them
            for key in json.loads(output["xai_family"]):
                self.family.setdefault(key, (key, {}))
        if "xai_studies" in output:
            for key, meta in json.loads(output["xai_studies"]).items():
                self.studies.setdefault(key, meta)

    def cleanup(self) -> None:
        if self._own_cache is not None:
            shutil.rmtree(self._own_cache, ignore_errors=True)

    # ------------------------------------------------------------------ studies

    def study(
        self,
        description: Mapping[str, Any],
        compute: Callable[[], Any],
        *,
        announce: Callable[[str], None] | None = None,
        files: Sequence[tuple[str, int, int]] = (),
    ) -> Any:
        """The study ``description`` names: computed once per run (across xdist workers), and
        kept between runs (``--xai-study-cache``) under a key that adds the photo ``files``
        (:func:`photo_files`), the package's code and the libraries' versions."""
        key = fingerprint(description)
        if key in self._results:
            return self._results[key]
        durable = self._durable_path(description, files)

        def produce() -> Any:
            from xai_checks.kept_study import read_kept_study, write_kept_study

            say = announce or write_err
            if durable is not None:
                kept, problem = read_kept_study(durable)
                if kept is not None:
                    self._note_loaded(key, description, kept, durable, announce)
                    return kept
                if problem is not None:
                    say(
                        f"xai-checks: the kept study {durable} is not used: {problem}; computing it"
                    )
            result = self._compute(key, description, compute, announce)
            if durable is not None:
                problem = write_kept_study(durable, result)
                if problem is not None:
                    say(
                        f"xai-checks: the study cannot be kept in {durable.parent}: {problem}; "
                        "the next run computes it again (--xai-study-cache FOLDER names another "
                        "folder, none turns keeping off)"
                    )
            return result

        if self.cache_dir is None:
            result = produce()
        else:
            from filelock import FileLock

            path = self.cache_dir / f"{key}.pickle"
            with FileLock(str(path) + ".lock"):
                if path.exists():
                    result = pickle.loads(path.read_bytes())
                else:
                    result = produce()
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(pickle.dumps(result))
                    tmp.replace(path)
        self._results[key] = result
        return result

    def _durable_path(
        self, description: Mapping[str, Any], files: Sequence[tuple[str, int, int]]
    ) -> Path | None:
        """Where this study is kept between runs (``--xai-study-cache``), or None when off."""
        folder = self.settings.values.get("study_cache")
        if not folder or str(folder).lower() == "none":
            return None
        root = Path(str(getattr(self.config, "rootpath", ".")))
        key = fingerprint(
            {
                "study": fingerprint(description),
                "code": package_digest(),
                "versions": library_versions(),
                "photo_files": [list(f) for f in files],
            }
        )
        return (root / str(folder)).resolve() / f"{key}.pickle"

    def _note_loaded(
        self,
        key: str,
        description: Mapping[str, Any],
        result: Any,
        path: Path,
        announce: Callable[[str], None] | None,
    ) -> None:
        self.studies[key] = {
            "key": key,
            "seconds": 0.0,
            "loaded_from": str(path),
            "photoset": dict(result.photoset) | {"fingerprint": description.get("photos")},
            "timings": dict(result.timings),
            "computed_by": "an earlier run",
            "description": dict(description),
        }
        if announce is not None:
            announce(
                f"xai-checks: study {key} loaded from {path} (an earlier run on the same photos, "
                "weights, code and settings; --xai-study-cache none recomputes it)"
            )

    def _compute(
        self,
        key: str,
        description: Mapping[str, Any],
        compute: Callable[[], Any],
        announce: Callable[[str], None] | None,
    ) -> Any:
        start = time.perf_counter()
        result = compute()
        meta = {
            "key": key,
            "seconds": time.perf_counter() - start,
            "photoset": dict(result.photoset) | {"fingerprint": description.get("photos")},
            "timings": dict(result.timings),
            "computed_by": self.worker or "main",
            "models": {
                run.name: {
                    "role": getattr(run, "role", ""),
                    "class": getattr(run, "model_class", ""),
                    "weights": (run.weights or {}).get("source"),
                }
                for run in getattr(result, "runs", {}).values()
            },
            "description": dict(description),
        }
        self.studies[key] = meta
        if announce is not None:
            announce(
                f"xai-checks: study {key} done in {meta['seconds']:.0f} s "
                f"({result.photoset.get('n_used')} photos used)"
            )
        return result

    def record(self, key: str, verdict: Any) -> None:
        self.verdicts.setdefault(key, verdict)

    # ------------------------------------------------------------------ end of run

    def payload(self) -> dict[str, Any]:
        by_id = self.by_claim()
        return {
            "schema": "xai-checks/claims",
            "schema_version": 2,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": self.settings.key(),
            # the models actually tested (class, weights source), not the --xai-weights default
            "models": next(iter(self.studies.values()), {}).get("models", {}),
            "studies": list(self.studies.values()),
            "study": next(iter(self.studies.values()), {}),
            "verdicts": {k: v.to_dict() for k, v in by_id.items()},
            "bottom_line": _bottom_line(list(by_id.values())),
        }

    def by_claim(self) -> dict[str, Any]:
        """Verdicts keyed for the table and JSON (``id`` or ``id[overrides]``)."""
        return dict(self.verdicts)

    def finish(self) -> bool:
        """Write claims.json, check or rewrite the baseline. True when the run must fail."""
        from xai_checks.cache import atomic_write

        settings = self.settings
        if not self.verdicts:
            if settings.baseline is None or settings.update_baseline:
                return False
            if not self.family:
                self.lines.append(
                    f"baseline {settings.baseline} not compared: no claim was selected in this run"
                )
                return False
            # claims were selected but none reached a verdict: that is no pass
            return self._check_baseline({"verdicts": {}, "settings": settings.key()})
        payload = self.payload()
        json_path = settings.json_path or Path(self.config.rootpath) / ".xai-checks" / "claims.json"
        with atomic_write(json_path, "w") as handle:
            json.dump(payload, handle, indent=2)
        self.lines.append(f"claims written to {json_path}")
        if settings.baseline is None:
            return False
        if settings.update_baseline:
            with atomic_write(settings.baseline, "w") as handle:
                json.dump(payload, handle, indent=2)
            self.lines.append(f"baseline rewritten: {settings.baseline}")
            return False
        return self._check_baseline(payload)

    def _check_baseline(self, payload: Mapping[str, Any]) -> bool:
        """Compare ``payload`` with the baseline; True when the run must fail."""
        settings = self.settings
        path = settings.baseline
        assert path is not None
        baseline, problem = self._usable_baseline(payload)
        problems = [] if problem is None else [problem]
        if baseline is not None and problem is None:
            problems += coverage_problems(
                judged=payload["verdicts"], selected=self.family, baseline=baseline
            )
            unselected = sorted(set(baseline["verdicts"]) - set(self.family) - set(self.verdicts))
            if unselected:
                self.lines.append(
                    f"baseline {path}: not compared, not selected in this run: "
                    + ", ".join(unselected)
                )
        if problems:
            if settings.baseline_optional:
                self.lines.extend(
                    f"baseline not compared (--xai-baseline-optional): {p}" for p in problems
                )
                return False
            self.failures.extend(
                f"{p} (pass --xai-baseline-optional to run without a usable baseline)"
                for p in problems
            )
            return True
        assert baseline is not None
        regressions = compare_with_baseline(payload, baseline, tolerance=settings.tolerance)
        if regressions:
            self.failures.extend(f"REGRESSION {p}" for p in regressions)
            return True
        self.lines.append(f"baseline {path}: no regressions")
        return False

    def _usable_baseline(
        self, payload: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The baseline (None when unusable) and the problem that stops a comparison."""
        path = self.settings.baseline
        assert path is not None
        if not path.exists():
            return None, f"baseline {path} does not exist (create it with --xai-update-baseline)"
        try:
            baseline = load_baseline(path)
        except BaselineError as exc:
            return None, str(exc)
        diffs = comparable(payload["settings"], baseline["settings"])
        if diffs:
            return baseline, f"baseline {path} was made with other settings: {'; '.join(diffs)}"
        if not payload["verdicts"]:
            return baseline, None
        old_ps = baseline["study"]["photoset"]["fingerprint"]
        new_ps = ((payload.get("study") or {}).get("photoset") or {}).get("fingerprint")
        if not new_ps:
            return baseline, (
                f"baseline {path}: the photo set cannot be compared: this run's study has no "
                "photo set fingerprint"
            )
        if old_ps != new_ps:
            return baseline, f"baseline {path} was made on another photo set (fingerprint {old_ps})"
        return baseline, None

    def summary_lines(self) -> list[str]:
        from xai_checks.table import verdict_lines

        out = []
        for meta in self.studies.values():
            ps = meta.get("photoset", {})
            out.append(
                f"study {meta.get('key')}: photo set {ps.get('name')} - {ps.get('n_used')} photos "
                f"used, {ps.get('n_skipped')} skipped; {meta.get('seconds', 0):.1f} s "
                f"(computed by {meta.get('computed_by')})"
            )
        embedded = any(
            meta.get("photoset", {}).get("name") == "embedded" for meta in self.studies.values()
        )
        if self.settings.data_note and embedded:  # the note is about the embedded photos
            out.append(f"NOTE: {self.settings.data_note}")
        out.extend(verdict_lines(self.by_claim()))
        return out


def _bottom_line(verdicts: list[Any]) -> dict[str, Any] | None:
    """The run's reconciled conclusion and how its claims were corrected together."""
    if not verdicts or not all(hasattr(v, "claim") for v in verdicts):
        return None
    from xai_checks.claims import bottom_line, multiplicity_note

    return {**bottom_line(verdicts), "multiplicity": multiplicity_note(verdicts)}


#: Settings fields named otherwise than their option rows
_SETTING_OF_ROW = {"label": "labels", "json": "json_path"}


def settings_from_values(values: Mapping[str, Any]) -> Settings:
    """:class:`Settings` from :func:`xai_checks.options.plugin_values`: each field takes the
    value of the row of its name."""
    names = {f.name for f in fields(Settings)} - {"values", "data_note"}
    given = {_SETTING_OF_ROW.get(k, k): v for k, v in values.items()}
    return Settings(**{k: v for k, v in given.items() if k in names}, values=dict(values))


def write_err(line: str) -> None:
    """A progress line that reaches the user even from an xdist worker (its stderr is the
    controller's)."""
    print(line, file=sys.__stderr__, flush=True)
