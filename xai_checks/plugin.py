"""pytest plugin: explainability claims as tests.

Registered through the ``pytest11`` entry point, so installing ``xai-checks`` is enough.
Hooks, options and fixtures live here; the run's state is an
:class:`~xai_checks.session.XaiSession` on the config; the table is :mod:`xai_checks.table`.

Options (``pytest --help``, group "xai-checks") come from :mod:`xai_checks.options`, the same
rows as the CLI's, checked when pytest starts (a bad value is a usage error before any model
loads).

Fixtures (session-scoped except ``claim_verdict`` and ``xai_verdict``; override ``xai_model``,
``xai_layers``, ``xai_control_model``, ``xai_preprocess`` or ``xai_photoset`` in your
``conftest.py``):

``xai_settings``       the options, resolved
``xai_model``          the model under test (default: the ImageNet ResNet-50, ``--xai-weights``)
``xai_layers``         the layers to explain (``--xai-layers``; ``None``: the study's default)
``xai_control_model``  the null control (seeded, untrained); ``None`` to run without
``xai_preprocess``     how photos become model input: a ``Preprocess``, a mapping of its
                       fields, or a callable transform (``--xai-input-size``, ``--xai-mean``,
                       ``--xai-std``, ``--xai-transform``; default ImageNet's at 224 px)
``xai_photoset``       the photo set (``--xai-data``)
``xai_study``          hands out studies: one per settings for the whole run, also under xdist
``xai_verdict``        ``xai_verdict("seed-depth-ratio", alpha=0.01)`` -> Verdict, recorded in
                       the end-of-run table, ``claims.json`` and junit XML properties
``claim_verdict``      the verdict of ``@pytest.mark.claim("<id>", **overrides)``; overrides are
                       the claim's fields (``alpha``, ``layers``, params) and the study's
                       ``method``

``--xai-strict=data,boxes,cuda`` (or ``all``) fails, instead of skipping, a claim that cannot
run for lack of photos, boxes or CUDA.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from xai_checks.options import (
    AUTO,
    OptionError,
    add_plugin_options,
    auto_photos_note,
    plugin_values,
    preflight,
)
from xai_checks.session import (
    Settings,
    XaiSession,
    compare_with_baseline,
    model_fingerprint,
    photo_files,
    photoset_fingerprint,
    settings_from_values,
    transform_digest,
    write_err,
)

__all__ = ["Settings", "StudyRunner", "XaiSession", "compare_with_baseline"]

_SESSION_KEY = pytest.StashKey[XaiSession]()

#: the fields of ``Verdict.row()`` written as junit properties besides verdict/pvalue/effect/n
_JUNIT_ROW = (
    "n_unit",
    "effect_name",
    "ci_low",
    "ci_high",
    "confidence",
    "sesoi",
    "tipping_sesoi",
    "n_photos",
    "p_holm",
    "mde",
    "power_statement",
)

#: marker keywords that change the study rather than the claim's evaluation
_STUDY_KEYS = ("method", "channels_last", "target")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xai-checks", "xai-checks: explainability claims as tests")
    add_plugin_options(group)


def _resolve_data(data: str) -> tuple[str, str]:
    if data != "auto":
        return data, ""
    from xai_checks.data import DataNotFoundError, find_imagenet_samples

    try:
        if find_imagenet_samples() is not None:
            return "imagenet-samples", ""
        why = "the ImageNet sample photos were not found"
    except DataNotFoundError as exc:
        why = str(exc)
    return "embedded", (
        f"{why} (set XAI_CHECKS_IMAGENET_SAMPLES or run "
        "`xai-checks data fetch imagenet-samples`): claims ran on the small embedded set"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "claim(id, **overrides): the test checks the named explainability claim; the fixture "
        "`claim_verdict` gives its verdict. Overrides: the claim's fields (alpha, layers, "
        "params) and the study's method",
    )
    from xai_checks.distributed import (
        DistributedEnvError,
        TorchrunPytestPlugin,
        check_env,
        env_world_size,
    )

    try:
        check_env()
    except DistributedEnvError as exc:
        raise pytest.UsageError(f"xai-checks: {exc}") from None
    if env_world_size() > 1:  # torchrun: one study sharded over the ranks
        device = str(getattr(config.option, "xai_device", None) or "cpu")
        config.pluginmanager.register(TorchrunPytestPlugin(device), "xai-checks-torchrun")
    if config.option.help or getattr(config.option, "version", False):
        return
    try:
        values = plugin_values(config)
        if not hasattr(config, "workerinput"):  # xdist workers: the controller checked
            preflight(values, front="plugin")
    except OptionError as exc:
        raise pytest.UsageError(f"xai-checks: {exc}") from None
    settings = settings_from_values(values)
    if settings.limit == AUTO:  # asked for by name: the CLI's rule, on the data as given
        settings.limit = auto_photos_note(settings.data, AUTO)[0]
    settings.data, settings.data_note = _resolve_data(settings.data)
    if "data" in settings.strict and settings.data_note:
        raise pytest.UsageError(f"xai-checks: --xai-strict=data: {settings.data_note}")
    config.stash[_SESSION_KEY] = XaiSession(config, settings)


def _session(config: pytest.Config) -> XaiSession:
    try:
        return config.stash[_SESSION_KEY]
    except KeyError:
        raise pytest.UsageError("xai-checks: the plugin was not configured") from None


def _strict(config: pytest.Config, kind: str, message: str) -> None:
    """Skip with ``message``, or fail when ``--xai-strict`` names ``kind``."""
    if kind in _session(config).settings.strict:
        pytest.fail(f"--xai-strict={kind}: {message}", pytrace=False)
    pytest.skip(message)


# --------------------------------------------------------------------------- xdist


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: each worker gets the shared study cache."""
    session = node.config.stash.get(_SESSION_KEY, None)
    if session is not None:
        session.configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: gather a worker's verdicts."""
    session = node.config.stash.get(_SESSION_KEY, None)
    output = getattr(node, "workeroutput", None)
    if session is not None and output:
        session.merge(output)


# --------------------------------------------------------------------------- collection


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """The study phases the selected claims need (after -k/-m deselection; every xdist worker
    collects every item, so all agree on the study)."""
    xai = config.stash.get(_SESSION_KEY, None)
    if xai is None:
        return
    ids = []
    for item in items:
        marker = item.get_closest_marker("claim")
        if marker is not None and marker.args:
            ids.append(marker.args[0])
            # the run's family for Holm: every marked claim left after -k/-m, once per key
            key = verdict_key(marker.args[0], marker.kwargs, xai.settings.alpha)
            xai.family.setdefault(key, (marker.args[0], dict(marker.kwargs)))
    uses_direct = any("xai_verdict" in getattr(i, "fixturenames", ()) for i in items)
    if not ids or uses_direct:
        return  # xai_verdict can ask for any claim: run every phase
    from xai_checks.claims import get_claim, phases_for

    try:
        claims = [get_claim(i) for i in ids]
    except KeyError as exc:
        raise pytest.UsageError(f"xai-checks: {exc.args[0]}") from None
    xai.phases = phases_for(claims)
    xai.claims = tuple(claims)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def xai_settings(pytestconfig: pytest.Config) -> Settings:
    """The xai-checks options of this run, resolved."""
    return _session(pytestconfig).settings


@pytest.fixture(scope="session")
def xai_device(pytestconfig: pytest.Config, xai_settings: Settings) -> Any:
    import torch

    device = torch.device(xai_settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        _strict(pytestconfig, "cuda", "--xai-device cuda asked for, but no CUDA device is here")
    return device


@pytest.fixture(scope="session")
def xai_model(xai_settings: Settings, xai_device: Any) -> Any:
    """The model under test (``--xai-model FILE.py:factory``, else the ImageNet ResNet-50).
    Override in your conftest.py to test your own classifier."""
    from xai_checks.models import ModelSpecError, load_model_spec, load_resnet50

    if xai_settings.model:
        try:
            return load_model_spec(xai_settings.model, device=xai_device)
        except ModelSpecError as exc:
            raise pytest.UsageError(f"xai-checks: --xai-model: {exc}") from None
    return load_resnet50(xai_settings.weights, device=xai_device)


@pytest.fixture(scope="session")
def xai_control_model(xai_settings: Settings, xai_model: Any) -> Any:
    """The null control: a seeded, re-initialised copy of ``xai_model`` (the same class), or
    ``None`` with ``--xai-control none``."""
    if xai_settings.control == "none":
        return None
    from xai_checks._util import model_device
    from xai_checks.models import ModelSpecError, load_model_spec, reinitialised_copy

    if xai_settings.control_model:
        try:
            return load_model_spec(xai_settings.control_model, device=model_device(xai_model))
        except ModelSpecError as exc:
            raise pytest.UsageError(f"xai-checks: --xai-control-model: {exc}") from None
    return reinitialised_copy(xai_model, seed=xai_settings.seed)


@pytest.fixture(scope="session")
def xai_layers(xai_settings: Settings, xai_model: Any) -> Any:
    """Layers to explain: ``--xai-layers``; else ResNet-50's layer1..layer4 for the default
    model, ``None`` (picked automatically: the last module at each spatial resolution) for
    any other model."""
    from xai_checks.cam import DEFAULT_LAYERS
    from xai_checks.models import MSRAResNet50

    if xai_settings.layers:
        return tuple(xai_settings.layers)
    return DEFAULT_LAYERS if isinstance(xai_model, MSRAResNet50) else None


@pytest.fixture(scope="session")
def xai_preprocess(xai_settings: Settings) -> Any:
    """How photos become the model's input: ``--xai-input-size``, ``--xai-mean``, ``--xai-std``
    or ``--xai-transform`` (default: ImageNet's eval transform at 224 px). Override in your
    conftest.py beside ``xai_model``, returning a :class:`~xai_checks.data.classes.Preprocess`,
    a mapping of its fields (``{"input_size": 64, "mean": (0.5,) * 3, "std": (0.5,) * 3}``) or
    a callable transform (PIL image -> tensor)."""
    from xai_checks.data.classes import Preprocess

    try:
        return Preprocess(**xai_settings.preprocess)
    except ValueError as exc:
        raise pytest.UsageError(f"xai-checks: {exc}") from None


@pytest.fixture(scope="session")
def xai_photoset(pytestconfig: pytest.Config, xai_settings: Settings) -> Any:
    """The photo set claims run on."""
    from xai_checks.data import DataNotFoundError, open_photoset

    classes = None
    if xai_settings.classes:
        from xai_checks.data.classes import read_class_list

        classes = read_class_list(xai_settings.classes)
    try:
        photos = open_photoset(
            xai_settings.data,
            layout=xai_settings.layout,  # type: ignore[arg-type]
            labels=xai_settings.labels or None,
            limit=xai_settings.limit,
            seed=xai_settings.seed,
            classes=classes,
        )
    except DataNotFoundError as exc:
        _strict(pytestconfig, "data", f"photo set unavailable: {exc}")
    if len(photos) == 0:
        raise pytest.UsageError(f"xai-checks: the photo set {photos.name} holds no photos")
    return photos


class StudyRunner:
    """Hands out studies (one per study settings, for the whole run) and verdicts."""

    def __init__(
        self,
        config: pytest.Config,
        model: Any,
        controls: dict[str, Any],
        photoset: Any,
        layers: tuple[str, ...] | None,
        preprocess: Any = None,
    ) -> None:
        self._config = config
        self.session = _session(config)
        self.settings = self.session.settings
        self.model = model
        self.controls = controls
        self.photoset = photoset
        self.layers = layers
        self.preprocess = preprocess

    def _study_config(self, overrides: Mapping[str, Any]) -> Any:
        try:
            config = self.settings.study_config(
                layers=self.layers,
                phases=self.session.phases,
                overrides=overrides,
                classes=getattr(self.photoset, "classes", None),
            )
        except OptionError as exc:
            raise pytest.UsageError(f"xai-checks: {exc}") from None
        if self.preprocess is None:
            return config
        return dataclasses.replace(config, preprocess=self._preprocess())

    def _preprocess(self) -> Any:
        """The ``xai_preprocess`` fixture's value as a ``Preprocess``."""
        from xai_checks.data.classes import as_preprocess

        try:
            return as_preprocess(self.preprocess)
        except (TypeError, ValueError) as exc:
            raise pytest.UsageError(f"xai-checks: xai_preprocess: {exc}") from None

    def result(self, **overrides: Any) -> Any:
        """The study with these study-level overrides (``layers``, ``method``)."""
        config = self._study_config(overrides)
        description = {
            "config": config.to_dict(),
            "models": {
                name: model_fingerprint(m)
                for name, m in {"under_test": self.model, **self.controls}.items()
            },
            "photos": photoset_fingerprint(self.photoset),
            "photoset": getattr(self.photoset, "name", None),
            "transform_code": transform_digest(config.preprocess.transform),
        }

        def compute() -> Any:
            from xai_checks.progress import LineProgress
            from xai_checks.study import run_study

            where = f"{self.photoset.name} ({len(self.photoset)} photos)"
            self._say(f"xai-checks: running the study on {where} ...")
            if self.settings.data_note and getattr(self.photoset, "name", None) == "embedded":
                self._say(f"xai-checks: NOTE {self.settings.data_note}")
            return run_study(
                self.model,
                self.photoset,
                controls=self.controls,
                config=config,
                progress=LineProgress(self._say, every=15.0),
                claims=self.session.claims,
            )

        result = self.session.study(
            description, compute, announce=self._say, files=photo_files(self.photoset)
        )
        if result.photoset.get("n_used", 0) == 0:
            raise pytest.UsageError(
                f"xai-checks: no usable photos in {self.photoset.name}: all "
                f"{result.photoset.get('n_skipped', 0)} were skipped"
            )
        return result

    def _say(self, line: str) -> None:
        worker = self.session.worker
        if worker is not None:
            write_err(f"[{worker}] {line}")
            return
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        capman = self._config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            write_err(line)
            return
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            reporter.write_line(line)
            reporter.flush()  # a CI log is a pipe: without this the line shows at the end

    def _prepare(self, claim: Any, overrides: dict[str, Any]) -> tuple[Any, dict[str, Any], str]:
        """The claim with its overrides, the study-level overrides, and the verdict's key."""
        from xai_checks.claims import get_claim

        overrides = dict(overrides)
        study_overrides = {k: overrides.pop(k) for k in _STUDY_KEYS if k in overrides}
        if "layers" in overrides and overrides["layers"] is not None:
            overrides["layers"] = tuple(overrides["layers"])
            study_overrides["layers"] = overrides["layers"]
        try:
            if isinstance(claim, str):
                claim = get_claim(claim)
            claim = claim.with_(**({"alpha": self.settings.alpha} | overrides))
        except (KeyError, TypeError) as exc:
            raise pytest.UsageError(f"xai-checks: {exc.args[0] if exc.args else exc}") from None
        key = verdict_key(claim.id, {**overrides, **study_overrides}, self.settings.alpha)
        return claim, study_overrides, key

    def _family_verdicts(self) -> dict[str, Any]:
        """Every marked claim of the run, judged once and corrected together (Holm).

        The family is known at collection (the same on every xdist worker and torchrun rank),
        so each test sees its claim's corrected verdict, and the table, claims.json and junit
        show the same one. A member whose study cannot be computed here is left out, and the
        others say so.
        """
        session = self.session
        if session.family_verdicts is not None:
            return session.family_verdicts
        from xai_checks.claims import apply_holm

        judged: dict[str, Any] = {}
        left_out: list[str] = []
        for key, (claim_id, overrides) in session.family.items():
            try:
                claim, study_overrides, _ = self._prepare(claim_id, overrides)
                judged[key] = _judge(claim, self.result(**study_overrides))
            except Exception as exc:  # that member's own test reports it
                left_out.append(f"{key} ({type(exc).__name__})")
        apply_holm(list(judged.values()))
        if left_out:
            for verdict in judged.values():
                if verdict.multiplicity is not None:
                    verdict.multiplicity["left_out"] = left_out
        session.family_verdicts = judged
        return judged

    def verdict(self, claim: Any, **overrides: Any) -> Any:
        """The verdict of ``claim`` with ``overrides``; a claim marked in this run is judged
        with the run's other marked claims (Holm), one asked for only directly is judged
        alone and says so."""
        claim, study_overrides, key = self._prepare(claim, overrides)
        family = self._family_verdicts() if key in self.session.family else {}
        if key in family:
            verdict = family[key]
        else:
            verdict = _judge(claim, self.result(**study_overrides))
            verdict.multiplicity = {
                "method": "none",
                "note": "asked for directly (xai_verdict), outside the run's family of "
                "@pytest.mark.claim claims: not corrected for multiplicity",
            }
        self.session.record(key, verdict)
        return verdict


def _judge(claim: Any, study: Any) -> Any:
    """``evaluate(claim, study)``, with a ``sys.exit`` in the claim's code turned into an
    error of that claim: pytest handles an exception in a fixture, but a ``SystemExit``
    passing through one leaves its fixtures half set up for every later test."""
    from xai_checks.claims import evaluate

    try:
        return evaluate(claim, study)
    except SystemExit as exc:
        kind = type(claim)
        raise RuntimeError(
            f"claim {claim.id!r} ({kind.__module__}.{kind.__qualname__}) called "
            f"sys.exit({exc.code!r}) while judging; a claim gives its answer as a verdict "
            "(self.verdict(study, n)), never by ending the run"
        ) from None


def verdict_key(claim_id: str, changes: Mapping[str, Any], alpha: float) -> str:
    """The key of a verdict in the table and claims.json: ``id`` or ``id[overrides]`` (an
    ``alpha`` equal to the run's is no change)."""
    changes = {k: v for k, v in changes.items() if not (k == "alpha" and v == alpha)}
    if "layers" in changes and changes["layers"] is not None:
        changes["layers"] = tuple(changes["layers"])
    if not changes:
        return claim_id
    return claim_id + "[" + ",".join(f"{k}={_show(v)}" for k, v in sorted(changes.items())) + "]"


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(map(str, value))
    return str(value)


@pytest.fixture(scope="session")
def xai_study(
    pytestconfig: pytest.Config,
    xai_model: Any,
    xai_control_model: Any,
    xai_photoset: Any,
    xai_layers: Any,
    xai_preprocess: Any,
) -> StudyRunner:
    """The study on ``xai_model`` (and the control) over ``xai_photoset``, run once, with the
    photos prepared by ``xai_preprocess``."""
    controls = {} if xai_control_model is None else {"untrained": xai_control_model}
    return StudyRunner(
        pytestconfig, xai_model, controls, xai_photoset, xai_layers, preprocess=xai_preprocess
    )


@pytest.fixture
def xai_verdict(xai_study: StudyRunner, request: pytest.FixtureRequest) -> Any:
    """``xai_verdict(claim_id, **overrides)``: the verdict, also recorded as junit XML
    properties."""

    def get(claim: Any, **overrides: Any) -> Any:
        verdict = xai_study.verdict(claim, **overrides)
        props = request.node.user_properties
        cid = verdict.claim.id
        props.append((f"xai:{cid}:verdict", verdict.status.value))
        row = verdict.row() if hasattr(verdict, "row") else {}
        p = row.get("p", (verdict.primary or {}).get("pvalue"))
        if p is not None:
            props.append((f"xai:{cid}:pvalue", p))
        if verdict.effect is not None:
            props.append((f"xai:{cid}:effect", verdict.effect))
        props.append((f"xai:{cid}:n", verdict.n))
        # the rest of the verdict's row: the same figures as the table and claims.json
        for name in _JUNIT_ROW:
            if row.get(name) is not None:
                props.append((f"xai:{cid}:{name}", row[name]))
        return verdict

    return get


def lacking(verdict: Any) -> str:
    """What an insufficient verdict lacks, for ``--xai-strict``: ``boxes`` or ``data``.

    Read from the reasons' codes, never their text (a GridPG reason that names the class
    'boxer' is still about photos)."""
    codes = {getattr(reason, "code", "") for reason in verdict.reasons}
    return "boxes" if "too-few-boxes" in codes else "data"


@pytest.fixture
def claim_verdict(request: pytest.FixtureRequest, xai_verdict: Any) -> Any:
    """The verdict of the claim named by the test's ``@pytest.mark.claim(id, **overrides)``.

    A verdict that is INCONCLUSIVE only because there were too few photos (or no boxes) skips
    the test with the reason, or fails it under ``--xai-strict``.
    """
    marker = request.node.get_closest_marker("claim")
    if marker is None or not marker.args:
        raise pytest.UsageError("claim_verdict needs @pytest.mark.claim('<claim id>')")
    verdict = xai_verdict(marker.args[0], **marker.kwargs)
    if verdict.insufficient:
        reasons = "; ".join(map(str, verdict.reasons))
        _strict(request.config, lacking(verdict), f"{verdict.claim.id}: {reasons}")
    if verdict.n == 0 and verdict.status.value == "SUPPORTED":
        pytest.fail(f"{verdict.claim.id}: SUPPORTED with n = 0 is not evidence", pytrace=False)
    return verdict


# --------------------------------------------------------------------------- end of run


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their verdicts to the controller; the controller (or a serial run)
    writes claims.json and checks the baseline, once."""
    config = session.config
    xai = config.stash.get(_SESSION_KEY, None)
    if xai is None:
        return
    if xai.worker is not None:
        config.workeroutput.update(xai.worker_output())  # type: ignore[attr-defined]
        return
    from xai_checks.distributed import is_main_process

    if not is_main_process():
        return  # under torchrun, rank 0 writes claims.json and checks the baseline, once
    try:
        failed = xai.finish()
    finally:
        xai.cleanup()
    if failed:
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            noun = "xai-checks baseline failure" + ("s" if len(xai.failures) > 1 else "")
            reporter.stats.setdefault(noun, []).extend(_Failure(f) for f in xai.failures)


class _Failure:
    """A terminal-stats entry, so the final summary line counts baseline failures."""

    count_towards_summary = True

    def __init__(self, text: str) -> None:
        self.text = text


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    xai = config.stash.get(_SESSION_KEY, None)
    if xai is None or xai.worker is not None:
        return
    from xai_checks.distributed import is_main_process

    if not is_main_process():
        return
    if not xai.verdicts and not xai.lines and not xai.failures:
        return
    from xai_checks.fmt import printable

    tr = terminalreporter
    tr.section("xai-checks claims")
    for line in xai.summary_lines():
        tr.write_line(printable(line))
    for line in xai.lines:
        tr.write_line(printable(line))
    for line in xai.failures:
        tr.write_line(f"FAILED {printable(line)}", red=True, bold=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    xai = config.stash.get(_SESSION_KEY, None)
    if xai is not None:
        xai.cleanup()
