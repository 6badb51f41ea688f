"""pytest plugin: explainability claims as tests.

Registered through the ``pytest11`` entry point, so installing ``xai-checks`` is enough.

Options (``pytest --help``, group "xai-checks"): the photo set, weights, control, alpha,
device, limit, seed, batch size, where to write the claims' JSON, and a committed baseline
that fails the run when a verdict flips or an effect size moves beyond a tolerance.

Fixtures (all session-scoped except ``claim_verdict`` and ``xai_verdict``; override
``xai_model`` / ``xai_photoset`` in your own ``conftest.py`` to test *your* model):

``xai_settings``       the options, resolved
``xai_model``          the model under test (default: the ImageNet ResNet-50, ``--xai-weights``)
``xai_control_model``  the null control: a seeded, re-initialised copy of ``xai_model`` (the same
                       class); ``None`` to skip
``xai_layers``         the layers to explain (default: layer1..layer4 for the default ResNet-50,
                       picked automatically for an overridden ``xai_model``)
``xai_photoset``       the photo set (``--xai-data``; the shared ImageNet samples if found,
                       else the photos embedded in installed packages -- said in the output)
``xai_study``          runs the study once per session and caches its numbers
``xai_verdict``        ``xai_verdict("seed-depth-ratio")`` -> :class:`~xai_checks.claims.Verdict`,
                       recorded in the end-of-run table, the JSON file and junit XML properties
``claim_verdict``      the verdict of the claim named by ``@pytest.mark.claim("...")``
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xai_checks.options import OptionError, add_plugin_options, plugin_values, preflight

__all__ = ["Settings", "StudyRunner"]

_REGISTRY_KEY = pytest.StashKey[dict[str, Any]]()
_SETTINGS_KEY = pytest.StashKey["Settings"]()


@dataclass
class Settings:
    data: str
    labels: list[str]
    weights: str
    control: str
    alpha: float
    device: str
    limit: int | None
    seed: int
    batch_size: int
    json_path: Path | None
    baseline: Path | None
    update_baseline: bool
    tolerance: float
    data_note: str = ""
    #: the model, its layers, labels and preprocessing (issue 9); None: the defaults
    model: str | None = None
    control_model: str | None = None
    layers: tuple[str, ...] | None = None
    method: str = "gradcam"
    channels_last: bool = False
    classes: str | None = None
    preprocess: dict[str, Any] | None = None

    def key(self) -> dict[str, Any]:
        """What a baseline must match to be comparable."""
        return {
            "data": self.data,
            "labels": self.labels,
            "weights": self.weights,
            "control": self.control,
            "limit": self.limit,
            "seed": self.seed,
        }


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xai-checks", "xai-checks: explainability claims as tests")
    add_plugin_options(group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "claim(id): the test checks the named explainability claim; the fixture "
        "`claim_verdict` gives its verdict",
    )
    config.stash[_REGISTRY_KEY] = {}
    from xai_checks.distributed import TorchrunPytestPlugin, env_world_size

    if env_world_size() > 1:  # torchrun: one study sharded over the ranks (issue 12)
        device = str(getattr(config.option, "xai_device", None) or "cpu")
        config.pluginmanager.register(TorchrunPytestPlugin(device), "xai-checks-torchrun")
    if config.option.help or hasattr(config, "workerinput"):
        return  # xdist workers: the controller checked the same options
    try:
        preflight(plugin_values(config), front="plugin")
    except OptionError as exc:
        raise pytest.UsageError(f"xai-checks: {exc}") from None


def _resolve_data(data: str) -> tuple[str, str]:
    if data != "auto":
        return data, ""
    from xai_checks.data import find_imagenet_samples

    if find_imagenet_samples() is not None:
        return "imagenet-samples", ""
    return "embedded", (
        "the ImageNet sample photos were not found (set XAI_CHECKS_IMAGENET_SAMPLES or run "
        "`xai-checks data fetch imagenet-samples`): claims ran on the small embedded set"
    )


def _settings(config: pytest.Config) -> Settings:
    if _SETTINGS_KEY in config.stash:
        return config.stash[_SETTINGS_KEY]
    try:
        values = plugin_values(config)
    except OptionError as exc:
        raise pytest.UsageError(f"xai-checks: {exc}") from None
    data, note = _resolve_data(values["data"])
    settings = Settings(
        data=data,
        labels=list(values["label"]),
        weights=values["weights"],
        control=values["control"],
        alpha=values["alpha"],
        device=values["device"],
        limit=values["limit"],
        seed=values["seed"],
        batch_size=values["batch_size"],
        json_path=Path(values["json"]) if values["json"] else None,
        baseline=Path(values["baseline"]) if values["baseline"] else None,
        update_baseline=values["update_baseline"],
        tolerance=values["tolerance"],
        data_note=note,
        model=values.get("model"),
        control_model=values.get("control_model"),
        layers=values.get("layers"),
        method=values.get("method") or "gradcam",
        channels_last=bool(values.get("channels_last")),
        classes=values.get("classes"),
        preprocess={
            key: values[key]
            for key in ("input_size", "mean", "std", "transform")
            if values.get(key) is not None
        },
    )
    config.stash[_SETTINGS_KEY] = settings
    return settings


@pytest.fixture(scope="session")
def xai_settings(pytestconfig: pytest.Config) -> Settings:
    """The xai-checks options of this run, resolved."""
    return _settings(pytestconfig)


@pytest.fixture(scope="session")
def xai_device(xai_settings: Settings) -> Any:
    import torch

    device = torch.device(xai_settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--xai-device cuda asked for, but no CUDA device is available")
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
    from xai_checks.models import ModelSpecError, load_model_spec, reinitialised_copy

    if xai_settings.control_model:
        try:
            return load_model_spec(xai_settings.control_model, device=_device_of(xai_model))
        except ModelSpecError as exc:
            raise pytest.UsageError(f"xai-checks: --xai-control-model: {exc}") from None
    return reinitialised_copy(xai_model, seed=xai_settings.seed)


def _device_of(model: Any) -> Any:
    from xai_checks._util import model_device

    return model_device(model)


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
def xai_photoset(xai_settings: Settings) -> Any:
    """The photo set claims run on."""
    from xai_checks.data import DataNotFoundError, open_photoset

    classes = None
    if xai_settings.classes:
        from xai_checks.data.classes import read_class_list

        classes = read_class_list(xai_settings.classes)
    try:
        return open_photoset(
            xai_settings.data,
            labels=xai_settings.labels or None,
            limit=xai_settings.limit,
            seed=xai_settings.seed,
            classes=classes,
        )
    except DataNotFoundError as exc:
        pytest.skip(f"photo set unavailable: {exc}")


class StudyRunner:
    """Runs the study once, lazily, and hands out verdicts."""

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        model: Any,
        controls: dict[str, Any],
        photoset: Any,
        layers: Any = None,
    ) -> None:
        self._config = config
        self.settings = settings
        self.model = model
        self.controls = controls
        self.layers = layers
        self.photoset = photoset
        self._result: Any = None
        # The fallback note only applies when the plugin's own photo set choice was used.
        fallback = settings.data_note and getattr(photoset, "name", None) == "embedded"
        self._note = settings.data_note if fallback else ""

    @property
    def result(self) -> Any:
        if self._result is None:
            from xai_checks.data.classes import Preprocess
            from xai_checks.study import StudyConfig, run_study

            reporter = self._config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                where = f"{self.photoset.name} ({len(self.photoset)} photos)"
                reporter.write_line(f"\nxai-checks: running the study on {where} ...")
                if self._note:
                    reporter.write_line(f"xai-checks: NOTE {self._note}")
            start = time.perf_counter()
            self._result = run_study(
                self.model,
                self.photoset,
                controls=self.controls,
                config=StudyConfig(
                    layers=() if self.layers is None else tuple(self.layers),
                    method=self.settings.method,
                    channels_last=self.settings.channels_last,
                    preprocess=Preprocess(**(self.settings.preprocess or {})),
                    batch_size=self.settings.batch_size,
                    seed=self.settings.seed,
                ),
            )
            self._config.stash[_REGISTRY_KEY]["_study"] = {
                "seconds": time.perf_counter() - start,
                "photoset": self._result.photoset,
                "timings": self._result.timings,
                "note": self._note,
            }
        return self._result

    def verdict(self, claim: Any) -> Any:
        from xai_checks.claims import evaluate, get_claim

        if isinstance(claim, str):
            claim = get_claim(claim)
        claim = claim.with_(alpha=self.settings.alpha)
        verdict = evaluate(claim, self.result)
        self._config.stash[_REGISTRY_KEY][claim.id] = verdict
        return verdict


@pytest.fixture(scope="session")
def xai_study(
    pytestconfig: pytest.Config,
    xai_settings: Settings,
    xai_model: Any,
    xai_control_model: Any,
    xai_photoset: Any,
    xai_layers: Any,
) -> StudyRunner:
    """The study on ``xai_model`` (and the control) over ``xai_photoset``, run once."""
    controls = {} if xai_control_model is None else {"untrained": xai_control_model}
    return StudyRunner(
        pytestconfig, xai_settings, xai_model, controls, xai_photoset, layers=xai_layers
    )


@pytest.fixture
def xai_verdict(xai_study: StudyRunner, request: pytest.FixtureRequest) -> Any:
    """``xai_verdict(claim_id)``: the verdict, also recorded as junit XML properties."""

    def get(claim: Any) -> Any:
        verdict = xai_study.verdict(claim)
        props = request.node.user_properties
        props.append((f"xai:{verdict.claim.id}:verdict", verdict.status.value))
        primary = verdict.primary or {}
        if primary.get("pvalue") is not None:
            props.append((f"xai:{verdict.claim.id}:pvalue", primary["pvalue"]))
        if verdict.effect is not None:
            props.append((f"xai:{verdict.claim.id}:effect", verdict.effect))
        props.append((f"xai:{verdict.claim.id}:n", verdict.n))
        return verdict

    return get


@pytest.fixture
def claim_verdict(request: pytest.FixtureRequest, xai_verdict: Any) -> Any:
    """The verdict of the claim named by the test's ``@pytest.mark.claim(id)``.

    A verdict that is INCONCLUSIVE only because there were too few images skips the test,
    with the reason.
    """
    marker = request.node.get_closest_marker("claim")
    if marker is None or not marker.args:
        raise pytest.UsageError("claim_verdict needs @pytest.mark.claim('<claim id>')")
    verdict = xai_verdict(marker.args[0])
    if verdict.insufficient:
        pytest.skip(f"{verdict.claim.id}: {'; '.join(verdict.reasons)}")
    return verdict


# --------------------------------------------------------------------------- end of run


def _verdicts(config: pytest.Config) -> dict[str, Any]:
    registry = config.stash.get(_REGISTRY_KEY, {})
    return {k: v for k, v in registry.items() if not k.startswith("_")}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    verdicts = _verdicts(config)
    if not verdicts:
        return
    tr = terminalreporter
    tr.section("xai-checks claims")
    study = config.stash[_REGISTRY_KEY].get("_study", {})
    if study:
        ps = study.get("photoset", {})
        tr.write_line(
            f"photo set: {ps.get('name')} - {ps.get('n_used')} photos used, "
            f"{ps.get('n_skipped')} skipped; study time {study.get('seconds', 0):.1f} s"
        )
        if study.get("note"):
            tr.write_line(f"NOTE: {study['note']}")
    from xai_checks.table import verdict_lines

    for line in verdict_lines(verdicts):
        tr.write_line(line)
    for line in config.stash[_REGISTRY_KEY].get("_baseline_report", []):
        tr.write_line(line, red=line.startswith("REGRESSION"))


def _payload(config: pytest.Config, settings: Settings) -> dict[str, Any]:
    registry = config.stash[_REGISTRY_KEY]
    return {
        "schema": "xai-checks/claims",
        "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings.key() | {"alpha": settings.alpha},
        "study": registry.get("_study", {}),
        "verdicts": {k: v.to_dict() for k, v in _verdicts(config).items()},
    }


def compare_with_baseline(
    current: dict[str, Any], baseline: dict[str, Any], *, tolerance: float
) -> list[str]:
    """Lines describing regressions (a flipped verdict, an effect moved > tolerance)."""
    problems = []
    for claim_id, old in baseline.get("verdicts", {}).items():
        new = current.get("verdicts", {}).get(claim_id)
        if new is None:
            continue
        if new["status"] != old["status"]:
            problems.append(f"REGRESSION {claim_id}: verdict {old['status']} -> {new['status']}")
        old_e = (old.get("tests", {}).get("primary") or {}).get("effect")
        new_e = (new.get("tests", {}).get("primary") or {}).get("effect")
        if old_e is not None and new_e is not None and abs(new_e - old_e) > tolerance:
            problems.append(
                f"REGRESSION {claim_id}: effect {old_e:.3f} -> {new_e:.3f} (tolerance {tolerance})"
            )
    return problems


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    from xai_checks.distributed import is_main_process

    if not _verdicts(config) or _SETTINGS_KEY not in config.stash or not is_main_process():
        return  # under torchrun, rank 0 writes claims.json and checks the baseline, once
    settings = config.stash[_SETTINGS_KEY]
    payload = _payload(config, settings)
    from xai_checks.cache import atomic_write

    json_path = settings.json_path or Path(config.rootpath) / ".xai-checks" / "claims.json"
    with atomic_write(json_path, "w") as handle:
        json.dump(payload, handle, indent=2)
    report = config.stash[_REGISTRY_KEY].setdefault("_baseline_report", [])
    report.append(f"claims written to {json_path}")
    if settings.baseline is None:
        return
    if settings.update_baseline:
        with atomic_write(settings.baseline, "w") as handle:
            json.dump(payload, handle, indent=2)
        report.append(f"baseline rewritten: {settings.baseline}")
        return
    if not settings.baseline.exists():
        report.append(
            f"REGRESSION baseline {settings.baseline} does not exist "
            "(create it with --xai-update-baseline)"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    baseline = json.loads(settings.baseline.read_text())
    if baseline.get("settings", {}) != payload["settings"]:
        report.append(
            f"baseline {settings.baseline} was made with other settings "
            f"({baseline.get('settings')}); not compared"
        )
        return
    problems = compare_with_baseline(payload, baseline, tolerance=settings.tolerance)
    report.extend(problems or [f"baseline {settings.baseline}: no regressions"])
    if problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
