"""``xai-checks``: run the study, check claims, prepare weights, fetch photos.

Exit codes: 0 the run completed (``check``: at least one verdict, none REFUTED or CONFOUNDED);
1 ``check`` found a claim REFUTED or CONFOUNDED or judged none, a runtime failure (weights,
data), or user code (a model factory, transform or claim) that raised ``SystemExit``,
``KeyboardInterrupt`` or another ``BaseException``; 2 usage errors (bad options, unknown label,
CUDA asked for but absent); 130 interrupted by Ctrl-C (SIGINT).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xai_checks.options import (
    OptionError,
    add_cli_options,
    auto_photos_note,
    cli_values,
    preflight,
    resolve_source,
    study_config,
)

__all__ = ["main"]

EXIT_OK, EXIT_CLAIMS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2)."""


def _parser() -> argparse.ArgumentParser:
    from xai_checks import __version__

    parser = argparse.ArgumentParser(
        prog="xai-checks",
        description="Explainability claims, run as tests: Grad-CAM at every layer of a CNN, "
        "with statistics, null controls and ground truth.",
    )
    parser.add_argument("--version", action="version", version=f"xai-checks {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    study = sub.add_parser(
        "study",
        help="run the study and write a report (HTML, PNG, JSON)",
        description="Reproduce the study (Grad-CAM at layer1..4, ratio of pixels above the "
        "threshold, Kruskal-Wallis across layers) with its controls, and write a "
        "report. Example: xai-checks study --data <tutorial-10 root> --label wallaby",
    )
    add_cli_options(study, "study")

    check = sub.add_parser(
        "check",
        help="evaluate the built-in claims; exit 1 if any is REFUTED or CONFOUNDED",
    )
    add_cli_options(check, "check")
    check.add_argument("--json", action="store_true", help="print verdicts as JSON")

    weights = sub.add_parser("weights", help="fetch, convert and verify model weights")
    weights.add_argument(
        "--source", default="msra", help="msra, torchvision-v1, torchvision-v2, random, or a file"
    )
    weights.add_argument("--json", action="store_true", help="machine-readable output")

    data = sub.add_parser("data", help="photo sets: fetch or inspect")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download a photo set into the cache")
    fetch.add_argument("name", choices=["imagenet-samples"])
    fetch.add_argument("--dest", default=None)
    fetch.add_argument("--base-url", default=None)
    info = data_sub.add_parser(
        "info", help="what a photo source holds: 'embedded', 'imagenet-samples' or a folder"
    )
    info.add_argument("data", metavar="SOURCE")
    add_cli_options(info, "data info")
    return parser


# --------------------------------------------------------------------------- helpers


def _device(name: str) -> Any:
    import torch

    return torch.device(name)  # validated by xai_checks.options before any work


def _open_photos(args: argparse.Namespace) -> Any:
    from xai_checks.data import DataNotFoundError, LabelError, LayoutError, open_photoset

    source = resolve_source(args.data)
    if isinstance(source, Path) and not source.is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    classes = None
    if getattr(args, "classes", None):
        from xai_checks.data.classes import ClassListError, read_class_list

        try:
            classes = read_class_list(args.classes)
        except ClassListError as exc:
            raise UsageError(str(exc)) from None
    limit, note = auto_photos_note(args.data, getattr(args, "limit", None))
    if note and os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"xai-checks: {note}", file=sys.stderr)
    try:
        photos = open_photoset(
            source,
            layout=args.layout,
            labels=args.label or None,
            limit=limit,
            seed=getattr(args, "seed", 0),
            classes=classes,
        )
    except (LabelError, LayoutError, DataNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if len(photos) == 0:
        raise UsageError(
            f"no photos in {args.data}"
            + (f" for label(s) {', '.join(args.label)}" if args.label else "")
        )
    return photos


def _default_claims(claims: list[Any], phases: Any) -> list[Any]:
    """Without ``--claim``: every registered claim but those that need an opt-in phase not
    named in ``--phases`` (a study that never ran their phase has nothing to judge them on)."""
    from xai_checks.claims import phases_for
    from xai_checks.phases.registry import OPT_IN_PHASES

    asked = set(phases or ())
    return [c for c in claims if set(phases_for([c])) & OPT_IN_PHASES <= asked]


def _run(
    args: argparse.Namespace, device: Any = None, shard: Any = None
) -> tuple[Any, list[Any], Any]:
    from xai_checks.claims import evaluate_all, get_claim, phases_for, registered_claims
    from xai_checks.models import (
        ModelSpecError,
        load_model_spec,
        load_resnet50,
        reinitialised_copy,
    )
    from xai_checks.progress import progress_callback
    from xai_checks.study import StudyUsageError, run_study

    device = device if device is not None else _device(args.device)
    photos = _open_photos(args)
    try:  # the claims to judge; the study computes only the phases they need
        claims = (
            [get_claim(c) for c in args.claim]
            if getattr(args, "claim", None)
            else _default_claims(list(registered_claims()), args.phases)
        )
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    try:
        config = study_config(cli_values(args), phases=phases_for(claims), classes=photos.classes)
        if getattr(args, "maps_file", None):
            config = dataclasses.replace(config, save_maps=args.maps_file)
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    try:
        if args.model:
            model = load_model_spec(args.model, device=device)
        else:
            model = load_resnet50(args.weights, device=device)
        controls: dict[str, Any] = {}
        if args.control_model:
            controls["control"] = load_model_spec(args.control_model, device=device)
        elif args.control == "random":
            controls["untrained"] = reinitialised_copy(model, seed=args.seed)
    except (ModelSpecError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    quiet = shard is not None and not shard.is_main
    if not quiet:
        weights = vars(model).get("xai_weights")
        ranks = f"; {shard.world} ranks" if shard is not None and shard.world > 1 else ""
        print(
            f"xai-checks: {photos.name}: {len(photos)} photos of {len(photos.labels)} classes; "
            f"model {type(model).__name__} (weights {getattr(weights, 'source', 'user')}); "
            f"device {device}{ranks}",
            file=sys.stderr,
        )
    try:
        study = run_study(
            model,
            photos,
            controls=controls,
            config=config,
            progress=None if quiet else progress_callback(enabled=not args.quiet),
            shard=shard,
            claims=claims,
        )
    except StudyUsageError as exc:
        raise UsageError(str(exc)) from None
    if study.photoset.get("n_used", 0) == 0:
        raise UsageError(
            f"no usable photos in {photos.name}: all {study.photoset.get('n_skipped', 0)} "
            "were skipped (see the reasons above)"
        )
    if not quiet and study.config.layers_auto:
        print(f"xai-checks: layers picked: {', '.join(study.config.layers)}", file=sys.stderr)
    verdicts = evaluate_all(study, claims, alpha=args.alpha)
    return study, verdicts, photos


def _print_table(study: Any, verdicts: Sequence[Any]) -> None:
    from xai_checks.fmt import printable
    from xai_checks.table import verdict_lines

    ps = study.photoset
    print(
        f"\nphoto set {ps['name']}: {ps['n_used']} photos used, {ps['n_skipped']} skipped; "
        f"{study.timings.get('total', 0):.1f} s"
    )
    for run in study.runs.values():
        print(
            f"  {run.name} ({run.role}, {run.model_class}, weights {run.weights_source}): "
            f"top-1 {run.accuracy:.3f} on the photos used"
        )
    ran = [f"{k} {v:.1f} s" for k, v in study.timings.items() if k not in ("prepare", "total")]
    print(f"  phases: {', '.join(ran)}")
    for line in verdict_lines(verdicts):
        print(line)
    for s in study.skipped:  # file names are free text: escaped for the terminal
        print(printable(f"  skipped {s['file']}: {s['reason']}"))


def _maps_file(out: Path) -> Path:
    """Where ``--save-maps`` writes while the study runs: beside the report folder (the
    report moves it in, so the folder is only ever whole)."""
    from xai_checks.report.writer import report_folder

    folder = report_folder(out)
    return folder.parent / f".{folder.name}.maps-{os.getpid()}.npz"


def _cmd_study(args: argparse.Namespace) -> int:
    from xai_checks.report import ReportExistsError, write_report
    from xai_checks.saved_maps import MAPS_FILE

    out = Path(args.out) if args.out else Path(time.strftime("xai-checks-report-%Y%m%d-%H%M%S"))
    start = time.time()
    from xai_checks.distributed import distributed_from_env

    maps = _maps_file(out) if getattr(args, "save_maps", False) else None
    args.maps_file = None if maps is None else str(maps)
    with distributed_from_env(_device(args.device)) as (shard, device):
        try:
            study, verdicts, _ = _run(args, device, shard)
            if not shard.is_main:
                return EXIT_OK  # rank 0 writes the report, once
            extra = {"command": shlex.join(sys.argv), "wall_seconds": time.time() - start}
            files = {} if maps is None else {MAPS_FILE: maps}
            try:
                path = write_report(
                    study, verdicts, out, overwrite=args.overwrite, extra=extra, files=files
                )
            except ReportExistsError as exc:
                raise UsageError(str(exc)) from None
        finally:
            if maps is not None:
                maps.unlink(missing_ok=True)  # moved into the report unless the run failed
        _print_table(study, verdicts)
        print(f"\nreport: {Path(path) / 'report.html'}")
        from xai_checks.report.naming import see_more

        for line in see_more(verdicts, study):
            print(line)
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from xai_checks.claims import Status, get_claim

    if args.claim:
        try:
            wanted = [get_claim(c).id for c in args.claim]
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
    from xai_checks.distributed import distributed_from_env

    with distributed_from_env(_device(args.device)) as (shard, device):
        study, verdicts, _ = _run(args, device, shard)
    if not shard.is_main:
        return EXIT_OK
    if args.claim:
        verdicts = [v for v in verdicts if v.claim.id in wanted]
    if args.json:
        print(json.dumps([v.to_dict() for v in verdicts], indent=2))
    else:
        _print_table(study, verdicts)
    if not verdicts:
        print("xai-checks: no claim was judged; a check that judged nothing fails", file=sys.stderr)
        return EXIT_CLAIMS
    bad = {Status.REFUTED, Status.CONFOUNDED}
    return EXIT_CLAIMS if any(v.status in bad for v in verdicts) else EXIT_OK


def _cmd_weights(args: argparse.Namespace) -> int:
    from xai_checks.models import prepare_weights

    info = prepare_weights(args.source)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(
            f"source: {info.source}\narch:   {info.arch}\npath:   {info.path}\n"
            f"sha256: {info.sha256}\n{info.detail}".rstrip()
        )
    return EXIT_OK


def _cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "fetch":
        from xai_checks.data import fetch_dataset

        report = fetch_dataset(args.name, dest=args.dest, base_url=args.base_url)
        print(report)
        return EXIT_OK
    from xai_checks.fmt import printable

    photos = _open_photos(args)
    print(printable(str(photos)))
    for skip in photos.skipped:
        print(printable(f"  skipped {getattr(skip, 'path', skip)}: {getattr(skip, 'reason', '')}"))
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "study": _cmd_study,
    "check": _cmd_check,
    "weights": _cmd_weights,
    "data": _cmd_data,
}


class _Sigint:
    """Tells a real Ctrl-C (the SIGINT signal) from user code that raises
    ``KeyboardInterrupt`` itself: only the first is exit 130."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> _Sigint:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: signals cannot be watched here
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _error(text: str) -> None:
    from xai_checks.fmt import printable

    print(printable(f"xai-checks: {text}"), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai-checks`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    from xai_checks._util import NonFiniteError
    from xai_checks.cache import CacheError
    from xai_checks.data import FetchError
    from xai_checks.models import WeightsError
    from xai_checks.study import ModelChangedError

    command = args.command if args.command != "data" else f"data {args.data_command}"
    from xai_checks.distributed import DistributedEnvError, check_env

    with _Sigint() as sigint:
        try:
            preflight(cli_values(args), front="cli", command=command)
            if args.command in ("study", "check"):
                check_env()
                workers = _workers(args)
                if workers > 1:
                    from xai_checks.workers import launch_workers

                    return launch_workers(sys.argv[1:] if argv is None else list(argv), workers)
            return _COMMANDS[args.command](args)
        except (UsageError, OptionError, DistributedEnvError) as exc:
            _error(f"error: {exc}")
            return EXIT_USAGE
        except CacheError as exc:  # a configuration problem ($XAI_CHECKS_CACHE), like a bad flag
            _error(f"error: {exc}")
            return EXIT_USAGE
        except (WeightsError, FetchError, NonFiniteError, ModelChangedError) as exc:
            _error(str(exc))
            return EXIT_CLAIMS
        except KeyboardInterrupt:
            if sigint.received:
                _error("interrupted; nothing half-written was left behind")
                return EXIT_INTERRUPTED
            _error(_user_exit(KeyboardInterrupt()))
            return EXIT_CLAIMS
        except Exception:
            raise  # a bug or a runtime failure: its traceback is the report
        except BaseException as exc:  # SystemExit and the like, from user code
            _error(_user_exit(exc))
            return EXIT_CLAIMS


def _workers(args: argparse.Namespace) -> int:
    """How many one-thread worker processes run this study: 1 under torchrun (this process is
    already a rank), on CUDA, or when ``--save-maps`` writes from this process."""
    from xai_checks.distributed import env_world_size
    from xai_checks.options import MAX_AUTO_WORKERS

    if env_world_size() > 1 or str(args.device).startswith("cuda"):
        return 1
    if args.workers != "auto":
        return int(args.workers)
    if getattr(args, "save_maps", False):
        return 1
    from xai_checks.workers import auto_workers

    return auto_workers(MAX_AUTO_WORKERS)


def _user_exit(exc: BaseException) -> str:
    """What to say when user code (a model factory, transform or claim) ended the run."""
    what = f"{type(exc).__name__}({', '.join(map(repr, exc.args))})"
    if isinstance(exc, SystemExit):
        what = f"sys.exit({exc.code!r})"
    return (
        f"error: {what} was raised during the run (by a model factory, transform or claim?); "
        "nothing was judged, so the run fails"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
