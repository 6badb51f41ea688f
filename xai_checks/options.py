"""Every option of the ``xai-checks`` command and the pytest plugin, defined once.

Each :class:`Option` row says its name, how a value is parsed and validated (``type``), its
default, its help text, its CLI flag (``--alpha``), its plugin flag (``--xai-alpha``) and which
CLI subcommands take it. :mod:`xai_checks.cli` and :mod:`xai_checks.plugin` both build their
parsers from :data:`OPTIONS`, so the two front ends share defaults, help and validation.

Validation happens in two steps, both before any model is loaded:

1. ``type`` parses one value and rejects a bad one with :class:`argparse.ArgumentTypeError`
   (argparse turns that into exit 2 in the CLI; pytest into a usage error).
2. ``check`` sees the value beside all the others and the machine it runs on (does the folder
   exist, is the label in it, is CUDA there, can the report be written). :func:`preflight`
   runs every row's check and raises :class:`OptionError`; the CLI exits 2, the plugin raises
   :class:`pytest.UsageError`.

Each row also says where its value lands in :class:`~xai_checks.study.StudyConfig`
(``study``): a field, a field of a field (``preprocess.mean``), or ``None`` when the value
chooses photos, models, output or gating but no study number. :func:`study_config` turns the
values of either front end into the study's config through those rows alone.

Add an option by appending a row to :data:`OPTIONS` (keep the name unique, and give
``study``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from xai_checks.cam.methods import METHODS
from xai_checks.defaults import AUTO_LIMIT, MAX_CONTROL_SEEDS
from xai_checks.gridpg_targets import GRIDPG_TARGETS
from xai_checks.phases.registry import phase_names
from xai_checks.targets import TargetError, check_target, resolve_target, target_choice

if TYPE_CHECKING:
    from xai_checks.data.classes import ClassList
    from xai_checks.study import StudyConfig

__all__ = [
    "ALL",
    "AUTO_LIMIT",
    "OPTIONS",
    "Option",
    "OptionError",
    "StudyInputs",
    "add_cli_options",
    "add_plugin_options",
    "auto_photos_note",
    "cli_values",
    "option",
    "plugin_values",
    "preflight",
    "resolve_source",
    "study_assignments",
    "study_config",
]

#: how ``--limit`` / ``--xai-limit`` spell "every photo"
ALL = "all"
#: ``--data`` and ``--limit``: decided by the photos found (:func:`auto_photos_note`)
AUTO: Final = "auto"


_SAME: Any = object()
#: a row that has not said whether its value reaches the study (a test rejects it)
UNDECLARED: Any = object()


class OptionError(ValueError):
    """A bad option value (CLI exit 2, pytest usage error)."""


Check = Callable[[Any, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Option:
    """One option, for both front ends.

    ``name`` is the attribute the value lands on (``args.<name>``, ``values[name]``).
    ``cli`` / ``plugin`` are the flags (``None``: that front end does not have it).
    ``commands`` are the CLI subcommands that take it. ``type`` parses *and validates* one
    string (raise :class:`argparse.ArgumentTypeError` with a message that names the fix).
    ``check(value, values)`` validates against the other values and the machine
    (raise :class:`OptionError`); it must not load a model. ``plugin_default`` (if given)
    replaces ``default`` in the plugin; ``env`` names an environment variable that overrides
    the plugin's default.

    ``study`` is where the value lands in :class:`~xai_checks.study.StudyConfig`: a field
    name, a dotted path into a field (``preprocess.mean``, ``phase_options.faithfulness.images``)
    or ``None`` (the value never reaches the study). ``to_study(value, inputs)`` converts the
    parsed value for the study, reading :class:`StudyInputs` (default: unchanged); a ``None``
    result leaves the field at its default.
    """

    name: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    cli: str | None = None
    plugin: str | None = None
    commands: tuple[str, ...] = ("study", "check")
    choices: Sequence[str] | None = None
    action: Literal["store", "append", "store_true"] = "store"
    nargs: str | int | None = None
    metavar: str | None = None
    group: str = "options"
    check: Check | None = None
    plugin_default: Any = field(default=_SAME)
    env: str | None = None
    study: str | None = UNDECLARED
    to_study: Callable[[Any, StudyInputs], Any] | None = None

    def default_for(self, front: Literal["cli", "plugin"]) -> Any:
        if front == "plugin":
            if self.env and os.environ.get(self.env):
                return os.environ[self.env]
            if self.plugin_default is not _SAME:
                return self.plugin_default
        return self.default

    def dest(self, front: Literal["cli", "plugin"]) -> str:
        """Where argparse stores the value (pytest's namespace is shared: prefixed there)."""
        return self.name if front == "cli" else f"xai_{self.name}"

    def _kwargs(self, front: Literal["cli", "plugin"]) -> dict[str, Any]:
        default = self.default_for(front)
        if self.action == "append":
            default = list(default or [])
        help_text = self.help
        if self.action == "store" and default not in (None, [], ()):
            shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
            help_text = f"{help_text} (default: {shown})"
        kwargs: dict[str, Any] = {
            "dest": self.dest(front),
            "default": default,
            "action": self.action,
            "help": help_text.replace("%", "%%"),
        }
        if self.action != "store_true":
            for key in ("type", "choices", "nargs", "metavar"):
                if getattr(self, key) is not None:
                    kwargs[key] = getattr(self, key)
        return kwargs


# --------------------------------------------------------------------------- value types


def _fail(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _fail(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise _fail(f"must be a finite number, not {text!r}")
    return value


def significance(text: str) -> float:
    """A significance level: a finite number strictly between 0 and 1."""
    value = _float(text)
    if not 0.0 < value < 1.0:
        raise _fail(f"must be strictly between 0 and 1 (e.g. 0.05), not {text}")
    return value


def unit_interval_open_top(text: str) -> float:
    """A threshold on min-max normalised maps: 0 <= value < 1."""
    value = _float(text)
    if not 0.0 <= value < 1.0:
        raise _fail(f"must be in [0, 1) (maps are normalised to [0, 1]), not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise _fail(f"must be >= 0, not {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _fail(f"not a whole number: {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise _fail(f"must be a whole number >= 1, not {text}")
    return value


def control_seed_count(text: str) -> int:
    """R for ``--control-seeds``: 1 to :data:`~xai_checks.defaults.MAX_CONTROL_SEEDS`."""
    value = positive_int(text)
    if value > MAX_CONTROL_SEEDS:
        raise _fail(
            f"must be at most {MAX_CONTROL_SEEDS}, not {text}: each network after the first "
            "reruns the seeded samples, so the study's time grows with R"
        )
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise _fail(f"must be a whole number >= 0, not {text}")
    return value


def photo_limit(text: str | int | None) -> int | Literal["auto"] | None:
    """``all`` (every photo, returned as ``None``), ``auto`` (decided by the photo set, see
    :func:`auto_photos_note`) or a whole number >= 1."""
    word = text.strip().lower() if isinstance(text, str) else None
    if text is None or word == ALL:
        return None
    if word == AUTO:
        return AUTO
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    value = _int(str(text))
    if value < 1:
        raise _fail(f"must be a whole number >= 1, or '{ALL}' for every photo; not {text}")
    return value


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


#: the most one-thread worker processes ``--workers auto`` starts: each holds its own models and
#: batch (about 2 GB for the ResNet-50 study at the default batch), so the default stays within
#: a workstation's memory on many-core machines; ``--workers N`` asks for more
MAX_AUTO_WORKERS = 8


def workers_value(text: str) -> int | str:
    """``auto`` or a whole number >= 1."""
    if text.strip().lower() == "auto":
        return "auto"
    return positive_int(text)


def device_name(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    text = text.strip()
    if not _DEVICE.match(text):
        raise _fail(f"{text!r} is not a device xai-checks runs on: use cpu, cuda or cuda:N")
    return text


def comma_list(text: str) -> tuple[str, ...]:
    """``a,b,c`` -> ``("a", "b", "c")``; empty items are an error."""
    items = tuple(part.strip() for part in text.split(","))
    if not items or any(not item for item in items):
        raise _fail(f"expected a comma-separated list like a,b,c; got {text!r}")
    return items


def float_list(text: str) -> tuple[float, ...]:
    """``0.5,0.5,0.5`` -> ``(0.5, 0.5, 0.5)``: finite numbers, one per input channel."""
    return tuple(_float(item) for item in comma_list(text))


def positive_floats(text: str) -> tuple[float, ...]:
    values = float_list(text)
    if any(v <= 0 for v in values):
        raise _fail(f"every value must be > 0; got {text!r}")
    return values


def std_values(text: str) -> tuple[float, ...]:
    """Normalisation std per channel: each at least ``MIN_STD`` (the division is float32)."""
    from xai_checks.data.classes import MIN_STD

    values = float_list(text)
    if any(v < MIN_STD for v in values):
        raise _fail(f"every value must be >= {MIN_STD} (float32 division); got {text!r}")
    return values


def _check_input_size(value: int | None, values: Mapping[str, Any]) -> None:
    from xai_checks.data.classes import MAX_INPUT_SIZE

    if value is not None and value > MAX_INPUT_SIZE and not values.get("allow_large_input"):
        raise OptionError(
            f"--input-size {value} is above {MAX_INPUT_SIZE} px (one photo would take "
            f"{value * value * 12 / 2**30:.1f} GiB as float32 input); pass --allow-large-input "
            "if that is meant"
        )


def input_size(text: str) -> int:
    value = _int(text)
    if value < 8:
        raise _fail(f"must be a whole number >= 8 (pixels), not {text}")
    return value


def factory_spec(text: str) -> str:
    """``FILE.py:factory`` or ``package.module:factory`` (the file must exist; nothing is
    imported here: that happens when the model loads)."""
    where, sep, name = text.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise _fail(f"expected FILE.py:factory or package.module:factory, not {text!r}")
    if (where.endswith(".py") or "/" in where or os.sep in where) and not Path(
        where
    ).expanduser().is_file():
        raise _fail(f"{text!r}: no such file {where}")
    return text


def _check_classes(value: str | None, values: Mapping[str, Any]) -> None:
    if value is None:
        return
    from xai_checks.data.classes import ClassListError, read_class_list

    try:
        read_class_list(value)
    except ClassListError as exc:
        raise OptionError(f"--classes {value}: {exc}") from None


def _check_preprocess(value: Any, values: Mapping[str, Any]) -> None:
    mean, std = values.get("mean"), values.get("std")
    if mean is not None and std is not None and len(mean) != len(std):
        raise OptionError(
            f"--mean has {len(mean)} values but --std {len(std)}; give one per channel"
        )


_STRICT_KINDS = ("data", "boxes", "cuda")


def strict_kinds(text: str) -> tuple[str, ...]:
    """``all`` or a comma list of data, boxes, cuda."""
    if text.strip().lower() == ALL:
        return _STRICT_KINDS
    kinds = comma_list(text)
    unknown = [k for k in kinds if k not in _STRICT_KINDS]
    if unknown:
        raise _fail(
            f"unknown kind(s) {', '.join(unknown)}: use all, or a comma list of "
            + ", ".join(_STRICT_KINDS)
        )
    return kinds


# --------------------------------------------------------------------------- checks


def auto_photos_note(data: str, limit: int | Literal["auto"] | None) -> tuple[int | None, str]:
    """The number of photos to use (``None``: every one) and, for ``--data auto``, a line
    saying which photos were picked, why, and what to run for the other choice.

    ``limit`` ``auto`` is :data:`AUTO_LIMIT` when ``--data auto`` finds the ImageNet samples,
    and every photo otherwise; ``None`` (``--limit all``) is every photo whatever the data."""
    found_samples = data == AUTO and resolve_source(data) == "imagenet-samples"
    count = (AUTO_LIMIT if found_samples else None) if isinstance(limit, str) else limit
    if data != AUTO:
        return count, ""
    if found_samples:
        from xai_checks.data import find_imagenet_samples

        return count, (
            f"photos: --data auto found the ImageNet samples at {find_imagenet_samples()}; "
            f"using {'all' if count is None else count} of them "
            "(--data embedded: the 8 photos that ship with installed packages)"
        )
    return count, (
        "photos: --data auto found no ImageNet samples on this machine, so the 8 photos that "
        "ship with installed packages are used: too few for some claims. For every claim: "
        f"xai-checks data fetch imagenet-samples && xai-checks study --limit {AUTO_LIMIT}"
    )


def resolve_source(data: str) -> str | Path:
    """``auto`` -> ``imagenet-samples`` when found, else ``embedded``; a folder -> Path."""
    if data == "auto":
        from xai_checks.data import DataNotFoundError, find_imagenet_samples

        try:
            found = find_imagenet_samples()
        except DataNotFoundError:
            found = None
        return "imagenet-samples" if found is not None else "embedded"
    if data in ("embedded", "imagenet-samples"):
        return data
    return Path(data)


def data_root(data: str) -> Path | None:
    """The folder a ``--data`` value reads from (``None`` for the embedded photos)."""
    source = resolve_source(data)
    if source == "embedded":
        return None
    if source == "imagenet-samples":
        from xai_checks.data import find_imagenet_samples

        return find_imagenet_samples()
    return Path(source)


def _check_data(value: str, values: Mapping[str, Any]) -> None:
    if value in ("auto", "embedded", "imagenet-samples"):
        return
    path = Path(value)
    if not path.exists():
        raise OptionError(f"--data {value}: no such folder")
    if not path.is_dir():
        raise OptionError(f"--data {value}: not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise OptionError(f"--data {value}: permission denied")


def _check_labels(value: Sequence[str], values: Mapping[str, Any]) -> None:
    if not value:
        return
    from xai_checks.data import DataNotFoundError, LabelError, open_photoset, resolve_label

    wanted: dict[int, str] = {}
    for label in value:
        try:
            wanted[resolve_label(label)] = label
        except LabelError as exc:
            raise OptionError(str(exc)) from None
    data = values.get("data", "auto")
    try:
        photos = open_photoset(resolve_source(data), layout=values.get("layout", "auto") or "auto")
    except DataNotFoundError:
        return  # reported (or skipped) where the photo set is opened
    except Exception as exc:  # a layout error: the data check's business
        raise OptionError(f"--data {data}: {exc}") from None
    present = {s.label for s in photos.samples}
    missing = [label for index, label in wanted.items() if index not in present]
    if missing:
        raise OptionError(
            f"no photos of {', '.join(repr(m) for m in missing)} in {photos.name}"
            f" ({len(photos.samples)} photos of {len(present)} classes)"
        )


def _check_workers(value: int | str, values: Mapping[str, Any]) -> None:
    if value == "auto" or value == 1:
        return
    if str(values.get("device", "cpu")).startswith("cuda"):
        raise OptionError(
            f"--workers {value} spreads a CPU study over processes; on CUDA launch one process "
            "per GPU with torchrun instead"
        )
    if values.get("save_maps"):
        raise OptionError(f"--save-maps writes from one process: use --workers 1, not {value}")


def _check_device(value: str, values: Mapping[str, Any]) -> None:
    if not value.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise OptionError(
            f"--device {value} was asked for, but no CUDA device is available "
            "(torch.cuda.is_available() is False); use --device cpu"
        )
    if ":" in value and int(value.split(":")[1]) >= torch.cuda.device_count():
        raise OptionError(f"--device {value}: only {torch.cuda.device_count()} CUDA device(s)")


def _check_weights(value: str, values: Mapping[str, Any]) -> None:
    if value == "msra" or Path(value).is_file():
        return  # the default needs no torch import to be known good
    from xai_checks.models import SOURCES

    if value not in SOURCES:
        raise OptionError(
            f"--weights {value}: unknown weights source; use one of {', '.join(SOURCES)} "
            "or a state-dict file that exists"
        )


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _check_out(value: str | None, values: Mapping[str, Any]) -> None:
    if value is None:
        return
    from xai_checks.report import is_report_folder
    from xai_checks.report.writer import report_folder

    # the folder the report will replace: a symbolic link is followed, as the writer does
    out = real = report_folder(value)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {value}: a file of that name exists; choose a folder name")
    root = data_root(values.get("data", "embedded") or "embedded")
    if root is not None:
        data_real = Path(os.path.realpath(root))
        if _is_within(real, data_real):
            raise OptionError(
                f"--out {value} is inside the photo folder {root}; the report would mix with "
                "the photos: choose a folder outside it"
            )
        if _is_within(data_real, real):
            raise OptionError(
                f"--out {value} holds the photo folder {root}; refusing to write a report there"
            )
    if out.exists() and any(out.iterdir()):
        if not values.get("overwrite"):
            raise OptionError(f"{value} exists and is not empty; pass --overwrite to replace it")
        if not is_report_folder(out):
            raise OptionError(
                f"--overwrite: {value} does not hold (only) an earlier xai-checks report; "
                "refusing to delete it. Choose another --out folder"
            )
    # The nearest existing ancestor must be a folder we can write in: try it (permission
    # bits say nothing for root, or on read-only and special file systems).
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OptionError(f"--out {value}: {probe} is a file, not a folder")
    try:
        tempfile.TemporaryDirectory(prefix=".xai-checks-probe-", dir=probe).cleanup()
    except OSError as exc:
        raise OptionError(f"--out {value}: cannot write in {probe} ({exc.strerror})") from None


# --------------------------------------------------------------------------- values for the study


@dataclass(frozen=True)
class StudyInputs:
    """What a row's ``to_study`` may read besides its own value: every option's value, and
    the class list of the photo set the study runs on (``None``: ImageNet-1k's), which class
    names resolve against."""

    values: Mapping[str, Any]
    classes: ClassList | None = None


def _study_layers(value: Sequence[str] | None, inputs: StudyInputs) -> tuple[str, ...]:
    """The layers asked for; unnamed: ResNet-50's stages for the default model, ``()`` (picked
    when the study runs) for a ``model`` of the user's. An empty sequence also means picked."""
    if value is not None:
        return tuple(value)
    if inputs.values.get("model"):
        return ()
    from xai_checks.cam import DEFAULT_LAYERS

    return tuple(DEFAULT_LAYERS)


def _study_target(value: str | int, inputs: StudyInputs) -> str | int:
    """``true``, ``predicted``, a class index, or a class name of the photo set's class list
    (ImageNet-1k's names without one): :func:`xai_checks.targets.resolve_target`."""
    try:
        return resolve_target(value, inputs)
    except TargetError as exc:
        raise OptionError(f"--target {value!r}: {exc}") from None


def _true_or_none(value: bool, inputs: StudyInputs) -> bool | None:
    """A switch whose off is the field's default."""
    return True if value else None


def _tuple_or_none(value: Sequence[str] | None, inputs: StudyInputs) -> tuple[str, ...] | None:
    return tuple(value) if value else None


# --------------------------------------------------------------------------- the rows


class _RegisteredPhases(Sequence[str]):
    """The registered phases' names, read when the option is parsed (not when this module is
    imported), so a phase installed by another package is a valid choice."""

    def __getitem__(self, index: Any) -> Any:
        return phase_names()[index]

    def __len__(self) -> int:
        return len(phase_names())

    def __contains__(self, value: object) -> bool:
        return value in phase_names()


def _check_target(value: str | int, values: Mapping[str, Any]) -> None:
    try:
        check_target(value, classes_file=values.get("classes"))
    except TargetError as exc:
        raise OptionError(f"--target {value!r}: {exc}") from None


OPTIONS: list[Option] = [
    Option(
        "data",
        "photo set: a folder (flat ImageNet samples, tutorial-10 TinyImageNet, "
        "TinyImageNet-200, or an ImageFolder), 'embedded' (real photos shipped in installed "
        "packages), 'imagenet-samples', or 'auto' (default: the ImageNet samples if found on "
        f"this machine, {AUTO_LIMIT} of them unless --limit says otherwise; else embedded)",
        default="auto",
        env="XAI_CHECKS_DATA",
        cli="--data",
        plugin="--xai-data",
        commands=("study", "check"),
        group="photos",
        check=_check_data,
        study=None,
    ),
    Option(
        "layout",
        "how the photo folder is laid out",
        default="auto",
        choices=("auto", "flat", "tutorial10", "tinyimagenet200", "imagefolder"),
        cli="--layout",
        plugin="--xai-layout",
        commands=("study", "check", "data info"),
        group="photos",
        study=None,
    ),
    Option(
        "label",
        "keep only this class: name ('wallaby'), wnid or index; repeatable",
        default=(),
        action="append",
        cli="--label",
        plugin="--xai-label",
        commands=("study", "check", "data info"),
        group="photos",
        check=_check_labels,
        study=None,
    ),
    Option(
        "limit",
        f"use a seeded, class-stratified sample of N photos, or '{ALL}'; '{AUTO}' is "
        f"{AUTO_LIMIT} when --data auto finds the ImageNet samples, else every photo",
        default=AUTO,
        plugin_default=AUTO_LIMIT,
        type=photo_limit,
        metavar=f"N|{ALL}|{AUTO}",
        cli="--limit",
        plugin="--xai-limit",
        group="photos",
        study=None,
    ),
    Option(
        "weights",
        "weights of the model under test: msra (offline), torchvision-v1, torchvision-v2, "
        "or a state-dict file",
        default="msra",
        cli="--weights",
        plugin="--xai-weights",
        group="model and method",
        check=_check_weights,
        study=None,
    ),
    Option(
        "control",
        "the null control: 'random' (a seeded, re-initialised copy of the model under test: "
        "the same class) or 'none'",
        default="random",
        choices=("random", "none"),
        cli="--control",
        plugin="--xai-control",
        group="model and method",
        study=None,
    ),
    Option(
        "control_seeds",
        "R: the untrained control and each sanity-cascade step are R seeded networks, not "
        "one draw; effects against them bootstrap over photos and networks together "
        "(docs/control-seeds.md). To keep the study's time, the first network runs on every "
        "photo and the other R - 1 only on seeded samples (50 photos, 50 GridPG targets, 16 "
        "sanity photos): they measure the spread between networks, the first gives the "
        "photo-level precision; a photo set smaller than that sample keeps one network. "
        f"1: one network; at most {MAX_CONTROL_SEEDS}",
        default=5,
        type=control_seed_count,
        metavar="R",
        cli="--control-seeds",
        plugin="--xai-control-seeds",
        group="model and method",
        study="control_seeds",
    ),
    Option(
        "layers",
        "layers to explain, shallow to deep, comma-separated (e.g. layer1,layer2)",
        default=None,
        type=comma_list,
        metavar="A,B,...",
        cli="--layers",
        plugin="--xai-layers",
        group="model and method",
        study="layers",
        to_study=_study_layers,
    ),
    Option(
        "model",
        "your classifier: FILE.py:factory or package.module:factory, a callable returning an "
        "nn.Module (default: the ImageNet ResNet-50 of --weights); layers are then picked "
        "automatically unless --layers names them",
        default=None,
        type=factory_spec,
        metavar="SPEC",
        cli="--model",
        plugin="--xai-model",
        group="model and method",
        study=None,
    ),
    Option(
        "control_model",
        "give the null control yourself (FILE.py:factory or package.module:factory) instead of "
        "the seeded, re-initialised copy of the model under test",
        default=None,
        type=factory_spec,
        metavar="SPEC",
        cli="--control-model",
        plugin="--xai-control-model",
        group="model and method",
        study=None,
    ),
    Option(
        "method",
        "CAM method: "
        + ", ".join(f"{m.name} ({m.title})" for m in METHODS.values())
        + " (the registered methods, entry-point group xai_checks.methods)",
        default="gradcam",
        choices=tuple(METHODS),
        cli="--method",
        plugin="--xai-method",
        group="model and method",
        study="method",
    ),
    Option(
        "channels_last",
        "run the CAM engine on a private channels_last copy of the model (faster on CPU; maps "
        "move by float32 rounding, up to ~7e-3 at ResNet-50's layer1/layer2, so opt-in)",
        default=False,
        action="store_true",
        cli="--channels-last",
        plugin="--xai-channels-last",
        group="model and method",
        study="channels_last",
    ),
    Option(
        "tf32",
        "on CUDA, let convolutions use TF32 (faster; PyTorch's default). Off by default: on an "
        "H200 TF32 moved layer1 maps by up to 0.19 from the CPU's, full float32 by 7e-4",
        default=False,
        action="store_true",
        cli="--tf32",
        plugin="--xai-tf32",
        group="model and method",
        study="tf32",
    ),
    Option(
        "cuda_graphs",
        "on CUDA, replay the fused CAM pass from a CUDA graph captured per batch shape (less "
        "launch overhead at small batches; eager where capture is not possible, counted)",
        default=False,
        action="store_true",
        cli="--cuda-graphs",
        group="model and method",
        study="cuda_graphs",
    ),
    Option(
        "device_decode",
        "decode JPEG photos on the model's device from file bytes, one batch ahead of the "
        "engine (inputs within 1/255 of the CPU decoder's; other formats on the CPU, counted)",
        default=False,
        action="store_true",
        cli="--device-decode",
        group="photos",
        study="device_decode",
    ),
    Option(
        "classes",
        "the model's class names, one per line, in output order; ImageFolder folders are named "
        "by them (default: ImageNet-1k)",
        default=None,
        metavar="FILE",
        cli="--classes",
        plugin="--xai-classes",
        group="photos",
        check=_check_classes,
        study=None,
    ),
    Option(
        "input_size",
        "the model's input edge in pixels (default: 224; at most 4096 unless --allow-large-input)",
        default=None,
        type=input_size,
        metavar="PX",
        cli="--input-size",
        plugin="--xai-input-size",
        group="photos",
        check=_check_input_size,
        study="preprocess.input_size",
    ),
    Option(
        "allow_large_input",
        "take an --input-size above 4096 px (memory grows with its square)",
        default=False,
        action="store_true",
        cli="--allow-large-input",
        plugin="--xai-allow-large-input",
        group="photos",
        study="preprocess.allow_large",
        to_study=_true_or_none,
    ),
    Option(
        "mean",
        "normalisation mean per channel, e.g. 0.5,0.5,0.5 (default: ImageNet's)",
        default=None,
        type=float_list,
        metavar="M,M,M",
        cli="--mean",
        plugin="--xai-mean",
        group="photos",
        check=_check_preprocess,
        study="preprocess.mean",
    ),
    Option(
        "std",
        "normalisation std per channel, e.g. 0.5,0.5,0.5 (default: ImageNet's)",
        default=None,
        type=std_values,
        metavar="S,S,S",
        cli="--std",
        plugin="--xai-std",
        group="photos",
        study="preprocess.std",
    ),
    Option(
        "transform",
        "your preprocessing instead: FILE.py:factory returning a callable PIL image -> tensor",
        default=None,
        type=factory_spec,
        metavar="SPEC",
        cli="--transform",
        plugin="--xai-transform",
        group="photos",
        study="preprocess.transform",
    ),
    Option(
        "backend",
        "the Grad-CAM engine",
        default="native",
        choices=("native", "captum"),
        cli="--backend",
        group="model and method",
        study="backend",
    ),
    Option(
        "target",
        "explain the true label, the predicted class, or one class for every photo (its "
        "index, or its name in the class list)",
        default="true",
        type=target_choice,
        metavar="true|predicted|CLASS",
        cli="--target",
        plugin="--xai-target",
        check=_check_target,
        group="model and method",
        study="target",
        to_study=_study_target,
    ),
    Option(
        "device",
        "cpu, cuda or cuda:N",
        default="cpu",
        type=device_name,
        cli="--device",
        plugin="--xai-device",
        group="model and method",
        check=_check_device,
        study=None,
    ),
    Option(
        "workers",
        "CPU worker processes, each with one thread: 'auto' starts one per core torch would "
        f"use (at most {MAX_AUTO_WORKERS}), so the per-photo numbers are those of a one-thread "
        "run on any machine; 1 runs in this process on torch's own threads",
        default="auto",
        type=workers_value,
        cli="--workers",
        metavar="N",
        group="model and method",
        check=_check_workers,
        study=None,
    ),
    Option(
        "batch_size",
        "photos per batch",
        default=8,
        type=positive_int,
        cli="--batch-size",
        plugin="--xai-batch-size",
        group="model and method",
        study="batch_size",
    ),
    Option(
        "threshold",
        "a pixel is 'high' above this",
        default=0.85,
        type=unit_interval_open_top,
        cli="--threshold",
        group="statistics",
        study="threshold",
    ),
    Option(
        "alpha",
        "significance level, strictly between 0 and 1",
        default=0.05,
        type=significance,
        cli="--alpha",
        plugin="--xai-alpha",
        group="statistics",
        study=None,
    ),
    Option(
        "seed",
        "seed for sampling, mosaics and the control",
        default=0,
        type=non_negative_int,
        cli="--seed",
        plugin="--xai-seed",
        group="statistics",
        study="seed",
    ),
    Option(
        "mosaics",
        "GridPG: at most this many target photos, one mosaic each (each confidently "
        "classified photo is the target of one mosaic)",
        default=1000,
        type=positive_int,
        cli="--mosaics",
        group="statistics",
        study="gridpg_mosaics",
    ),
    Option(
        "gridpg_targets",
        "GridPG: which photos may be targets: 'confident' (classified correctly with "
        "confidence >= 0.9) or 'top5' (the true label is among the model's top 5 classes); "
        "both select on the model's own output, top5 far less (docs/gridpg.md)",
        default="confident",
        choices=GRIDPG_TARGETS,
        cli="--gridpg-targets",
        plugin="--xai-gridpg-targets",
        group="statistics",
        study="gridpg_targets",
    ),
    Option(
        "claim",
        "judge only this claim (repeat for more; default: every registered claim). The study "
        "runs the phases the chosen claims need, opt-in ones (faithfulness) included",
        default=None,
        action="append",
        metavar="ID",
        cli="--claim",
        group="statistics",
        study=None,
    ),
    Option(
        "phases",
        "study phases to run (default: those the claims need, opt-in phases only when a "
        "chosen claim needs them)",
        default=None,
        nargs="+",
        choices=_RegisteredPhases(),
        cli="--phases",
        group="statistics",
        study="phases",
        to_study=_tuple_or_none,
    ),
    Option(
        "faithfulness_photos",
        "faithfulness phase: photos in its seeded, class-stratified sample (default: the "
        "faithfulness claims' min_n)",
        default=None,
        type=positive_int,
        cli="--faithfulness-photos",
        plugin="--xai-faithfulness-photos",
        group="statistics",
        study="phase_options.faithfulness.images",
    ),
    Option(
        "quiet",
        "no progress output",
        action="store_true",
        default=False,
        cli="--quiet",
        commands=("study", "check"),
        study=None,
    ),
    Option(
        "out",
        "report folder (default: a new xai-checks-report-<time> folder)",
        default=None,
        cli="--out",
        commands=("study",),
        group="output",
        check=_check_out,
        study=None,
    ),
    Option(
        "save_maps",
        "also write every layer's maps of every photo to maps.npz in the report folder: raw "
        "(the layer's resolution, float32) and canonical (input size, [0, 1], float16), with "
        "the photos' files; read it with xai_checks.saved_maps.load_maps",
        default=False,
        action="store_true",
        cli="--save-maps",
        commands=("study",),
        group="output",
        study=None,  # where results go, not how they are made: the CLI sets the study's file
    ),
    Option(
        "overwrite",
        "replace --out when it holds an earlier xai-checks report (and nothing else)",
        action="store_true",
        default=False,
        cli="--overwrite",
        commands=("study",),
        group="output",
        study=None,
    ),
    # ------------------------------------------------------------------ plugin only
    Option(
        "json",
        "write the claims' verdicts here (default: .xai-checks/claims.json under the "
        "rootdir, when any claim ran)",
        default=None,
        plugin="--xai-json",
        commands=(),
        study=None,
    ),
    Option(
        "baseline",
        "compare verdicts and effect sizes with this baseline JSON; a flipped verdict, an "
        "effect moved by more than --xai-tolerance, or a baseline that is missing, unreadable "
        "or made with other settings fails the run",
        default=None,
        plugin="--xai-baseline",
        commands=(),
        study=None,
    ),
    Option(
        "study_cache",
        "folder (relative to the rootdir) that keeps each study between runs, keyed by a hash of "
        "everything its numbers depend on: the settings, the models' weights, the photos' "
        "names, sizes and times, the package's code and the versions of torch, numpy and scipy; "
        "a run on an unchanged tree loads the study instead of computing it ('none': off)",
        default=".xai-checks/studies",
        plugin="--xai-study-cache",
        commands=(),
        study=None,
    ),
    Option(
        "update_baseline",
        "rewrite --xai-baseline from this run instead of comparing",
        action="store_true",
        default=False,
        plugin="--xai-update-baseline",
        commands=(),
        study=None,
    ),
    Option(
        "baseline_optional",
        "opt out: a missing, unreadable or incomparable --xai-baseline is reported, not failed",
        action="store_true",
        default=False,
        plugin="--xai-baseline-optional",
        commands=(),
        study=None,
    ),
    Option(
        "tolerance",
        "largest allowed |effect - baseline effect|",
        default=0.15,
        type=non_negative_float,
        plugin="--xai-tolerance",
        commands=(),
        study=None,
    ),
    Option(
        "strict",
        "fail, instead of skip, a claim that cannot run for lack of: data (photos missing or "
        "too few), boxes, cuda; 'all' or a comma list",
        default=(),
        type=strict_kinds,
        metavar="all|data,boxes,cuda",
        plugin="--xai-strict",
        commands=(),
        study=None,
    ),
]


def option(name: str) -> Option:
    """The row called ``name``."""
    for row in OPTIONS:
        if row.name == name:
            return row
    raise KeyError(name)


def _rows(front: Literal["cli", "plugin"], command: str | None = None) -> Iterable[Option]:
    names: set[str] = set()
    for row in OPTIONS:
        if row.name in names:
            raise RuntimeError(f"option {row.name!r} is defined twice in xai_checks.options")
        names.add(row.name)
        in_cli = front == "cli" and row.cli and (command is None or command in row.commands)
        if in_cli or (front == "plugin" and row.plugin):
            yield row


def add_cli_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the options of CLI subcommand ``command`` to ``parser``, in their groups."""
    groups: dict[str, Any] = {}
    for row in _rows("cli", command):
        if row.group == "options":
            target: Any = parser
        else:
            target = groups.get(row.group) or groups.setdefault(
                row.group, parser.add_argument_group(row.group)
            )
        assert row.cli is not None
        target.add_argument(row.cli, **row._kwargs("cli"))


def add_plugin_options(group: Any) -> None:
    """Add every plugin option to pytest's option ``group``."""
    for row in _rows("plugin"):
        assert row.plugin is not None
        group.addoption(row.plugin, **row._kwargs("plugin"))


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The option values in ``args`` (only rows the subcommand has)."""
    return {row.name: getattr(args, row.name) for row in OPTIONS if hasattr(args, row.name)}


def plugin_values(config: Any) -> dict[str, Any]:
    """The option values of a pytest ``config``."""
    out: dict[str, Any] = {}
    for row in _rows("plugin"):
        value = config.getoption(row.dest("plugin"))
        if row.type is not None and isinstance(value, str) and row.action == "store":
            # a default from the environment has not been through argparse
            try:
                value = row.type(value)
            except argparse.ArgumentTypeError as exc:
                raise OptionError(f"{row.plugin}: {exc}") from None
        out[row.name] = value
    return out


def preflight(
    values: Mapping[str, Any],
    *,
    front: Literal["cli", "plugin"],
    command: str | None = None,
) -> None:
    """Run every check that applies; raise :class:`OptionError` on the first problem.

    Nothing here loads a model. Messages name the flag of the front end that was used.
    """
    rows = list(_rows(front, command))
    for row in rows:
        if row.check is None or row.name not in values:
            continue
        try:
            row.check(values[row.name], values)
        except OptionError as exc:
            message = str(exc)
            if front == "plugin" and row.cli and row.plugin:
                message = message.replace(row.cli + " ", row.plugin + " ")
            raise OptionError(message) from None


def study_assignments(
    values: Mapping[str, Any], *, classes: ClassList | None = None
) -> dict[str, Any]:
    """What ``values`` set in the study: ``{row.study: value}`` for every row in ``values`` that
    reaches it, converted by its ``to_study``; rows whose value is ``None`` are left out."""
    out: dict[str, Any] = {}
    inputs = StudyInputs(values=values, classes=classes)
    for row in OPTIONS:
        if row.study is None or row.study is UNDECLARED or row.name not in values:
            continue
        value = values[row.name]
        if row.to_study is not None:
            value = row.to_study(value, inputs)
        if value is not None:
            out[row.study] = value
    return out


def study_config(
    values: Mapping[str, Any],
    *,
    phases: Sequence[str] | None = None,
    classes: ClassList | None = None,
) -> StudyConfig:
    """The :class:`~xai_checks.study.StudyConfig` that option ``values`` ask for, for the CLI
    (:func:`cli_values`) and the plugin (:func:`plugin_values`) alike; a bad value raises
    :class:`OptionError`.

    ``phases``: the phases the judged claims need, used when ``values`` name none.
    ``classes``: the photo set's class list (``photos.classes``), which ``--target`` names
    resolve against.
    """
    from xai_checks.study import StudyConfig

    defaults = {f.name: f for f in dataclasses.fields(StudyConfig)}
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in study_assignments(values, classes=classes).items():
        name, _, rest = path.partition(".")
        if not rest:
            flat[name] = value
            continue
        inner = nested.setdefault(name, {})
        *parents, leaf = rest.split(".")
        for parent in parents:
            inner = inner.setdefault(parent, {})
        inner[leaf] = value
    if phases and "phases" not in flat:
        flat["phases"] = tuple(phases)
    try:
        for name, changes in nested.items():
            spec = defaults[name]
            default: Any = (
                spec.default_factory() if callable(spec.default_factory) else spec.default
            )
            # a dataclass field (Preprocess) is rebuilt, so its own checks run; a mapping is
            # merged
            flat[name] = (
                dataclasses.replace(default, **changes)
                if dataclasses.is_dataclass(default) and not isinstance(default, type)
                else {**default, **changes}
            )
        return StudyConfig(**flat)
    except (TypeError, ValueError) as exc:
        raise OptionError(str(exc)) from None
