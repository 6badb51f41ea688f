"""``xai-checks``: run the study, check claims, prepare weights, fetch photos.

Exit codes: 0 the run completed (``check``: no claim REFUTED or CONFOUNDED); 1 ``check`` found
a claim REFUTED or CONFOUNDED, or a runtime failure (weights, data); 2 usage errors (bad
options, unknown label, CUDA asked for but absent).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_CLAIMS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in how the command was called (exit code 2)."""


def _add_study_options(p: argparse.ArgumentParser) -> None:
    from xai_checks.cam import DEFAULT_LAYERS

    data = p.add_argument_group("photos")
    data.add_argument(
        "--data",
        default="embedded",
        help="a photo folder (flat ImageNet samples, tutorial-10 TinyImageNet, "
        "TinyImageNet-200, or an ImageFolder), 'embedded' (real photos "
        "shipped in installed packages) or 'imagenet-samples'. "
        "Default: %(default)s",
    )
    data.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "flat", "tutorial10", "tinyimagenet200", "imagefolder"],
    )
    data.add_argument(
        "--label",
        action="append",
        default=[],
        help="keep only this class: name ('wallaby'), wnid or index; repeatable",
    )
    data.add_argument(
        "--limit", type=int, default=None, help="use a seeded, class-stratified sample of N photos"
    )
    model = p.add_argument_group("model and method")
    model.add_argument(
        "--weights",
        default="msra",
        help="msra (default, offline), torchvision-v1, torchvision-v2, or a state-dict file",
    )
    model.add_argument(
        "--control",
        default="random",
        choices=["random", "none"],
        help="the untrained null control (default: random, seeded)",
    )
    model.add_argument(
        "--layers",
        nargs="+",
        default=list(DEFAULT_LAYERS),
        help="layers to explain (default: %(default)s)",
    )
    model.add_argument("--backend", default="native", choices=["native", "captum"])
    model.add_argument(
        "--target",
        default="true",
        choices=["true", "predicted"],
        help="explain the true label (default) or the predicted class",
    )
    model.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    model.add_argument("--batch-size", type=int, default=8)
    stat = p.add_argument_group("statistics")
    stat.add_argument(
        "--threshold",
        type=float,
        default=0.85,
        help="a pixel is 'high' above this (default: %(default)s)",
    )
    stat.add_argument("--alpha", type=float, default=0.05)
    stat.add_argument("--seed", type=int, default=0)
    stat.add_argument("--mosaics", type=int, default=48, help="GridPG mosaics (default: 48)")
    stat.add_argument(
        "--phases",
        nargs="+",
        default=None,
        help="subset of: ratio gridpg sanity agreement (default: all)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


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
    _add_study_options(study)
    study.add_argument(
        "--out", default=None, help="report folder (default: a new xai-checks-report-<time> folder)"
    )
    study.add_argument("--overwrite", action="store_true", help="replace an existing report folder")

    check = sub.add_parser(
        "check",
        help="evaluate the built-in claims; exit 1 if any is REFUTED or CONFOUNDED",
    )
    _add_study_options(check)
    check.add_argument(
        "--claim", action="append", default=[], help="only these claims (default: all built-in)"
    )
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
    info = data_sub.add_parser("info", help="what a photo source holds")
    info.add_argument("source")
    info.add_argument("--layout", default="auto")
    info.add_argument("--label", action="append", default=[])
    return parser


# --------------------------------------------------------------------------- helpers


def _progress(enabled: bool) -> Callable[[str, int, int], None] | None:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(
                total=total,
                desc=f"{phase:>9}",
                unit="img" if phase == "ratio" else "step",
                leave=True,
                file=sys.stderr,
            )
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _device(name: str) -> Any:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"bad --device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for, but no CUDA device is available "
            "(torch.cuda.is_available() is False); use --device cpu"
        )
    return device


def _open_photos(args: argparse.Namespace) -> Any:
    from xai_checks.data import DataNotFoundError, LabelError, LayoutError, open_photoset

    source: str | Path = args.data
    if source not in ("embedded", "imagenet-samples"):
        source = Path(args.data)
        if not source.exists():
            raise UsageError(f"--data {args.data}: no such folder")
    try:
        photos = open_photoset(
            source,
            layout=args.layout,
            labels=args.label or None,
            limit=args.limit,
            seed=getattr(args, "seed", 0),
        )
    except LabelError as exc:
        raise UsageError(str(exc)) from None
    except (LayoutError, DataNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    if len(photos) == 0:
        raise UsageError(
            f"no photos in {args.data}"
            + (f" for label(s) {', '.join(args.label)}" if args.label else "")
        )
    return photos


def _run(args: argparse.Namespace) -> tuple[Any, list[Any], Any]:
    from xai_checks.cam.state import resolve_layers
    from xai_checks.claims import evaluate_all
    from xai_checks.models import load_resnet50
    from xai_checks.study import PHASES, StudyConfig, run_study

    device = _device(args.device)
    photos = _open_photos(args)
    try:
        config = StudyConfig(
            layers=tuple(args.layers),
            threshold=args.threshold,
            target=args.target,
            backend=args.backend,
            batch_size=args.batch_size,
            seed=args.seed,
            gridpg_mosaics=args.mosaics,
            phases=tuple(args.phases or PHASES),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    model = load_resnet50(args.weights, device=device)
    try:
        resolve_layers(model, list(args.layers))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    models = {"pretrained": model}
    if args.control == "random":
        models["untrained"] = load_resnet50("random", seed=args.seed, device=device)
    print(
        f"xai-checks: {photos.name}: {len(photos)} photos of {len(photos.labels)} classes; "
        f"weights {vars(model)['xai_weights'].source}; device {device}",
        file=sys.stderr,
    )
    study = run_study(models, photos, config=config, progress=_progress(not args.quiet))
    verdicts = evaluate_all(study, alpha=args.alpha)
    return study, verdicts, photos


def _print_table(study: Any, verdicts: Sequence[Any]) -> None:
    from xai_checks.plugin import _table_lines

    ps = study.photoset
    print(
        f"\nphoto set {ps['name']}: {ps['n_used']} photos used, {ps['n_skipped']} skipped; "
        f"{study.timings.get('total', 0):.1f} s"
    )
    for run in study.runs.values():
        print(f"  {run.name}: top-1 {run.accuracy:.3f} on the photos used")
    for line in _table_lines({v.claim.id: v for v in verdicts}):
        print(line)
    for v in verdicts:
        print(f"  {v.claim.id}: {'; '.join(v.reasons)}")
    for s in study.skipped:
        print(f"  skipped {s['file']}: {s['reason']}")


def _cmd_study(args: argparse.Namespace) -> int:
    from xai_checks.report import ReportExistsError, write_report

    out = Path(args.out) if args.out else Path(time.strftime("xai-checks-report-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"{out} exists and is not empty; pass --overwrite to replace it")
    start = time.time()
    study, verdicts, _ = _run(args)
    extra = {"command": shlex.join(sys.argv), "wall_seconds": time.time() - start}
    try:
        path = write_report(study, verdicts, out, overwrite=args.overwrite, extra=extra)
    except ReportExistsError as exc:
        raise UsageError(str(exc)) from None
    _print_table(study, verdicts)
    print(f"\nreport: {Path(path) / 'report.html'}")
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from xai_checks.claims import Status, get_claim

    if args.claim:
        try:
            wanted = [get_claim(c).id for c in args.claim]
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
    study, verdicts, _ = _run(args)
    if args.claim:
        verdicts = [v for v in verdicts if v.claim.id in wanted]
    if args.json:
        print(json.dumps([v.to_dict() for v in verdicts], indent=2))
    else:
        _print_table(study, verdicts)
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
    args.limit = None
    photos = _open_photos(args)
    print(photos)
    for s in photos.skipped:
        print(f"  skipped {s.path}: {s.reason}")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "study": _cmd_study,
    "check": _cmd_check,
    "weights": _cmd_weights,
    "data": _cmd_data,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai-checks`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    from xai_checks.cache import CacheError
    from xai_checks.data import FetchError
    from xai_checks.models import WeightsError

    try:
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"xai-checks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CacheError as exc:  # a configuration problem ($XAI_CHECKS_CACHE), like a bad flag
        print(f"xai-checks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (WeightsError, FetchError) as exc:
        print(f"xai-checks: {exc}", file=sys.stderr)
        return EXIT_CLAIMS
    except KeyboardInterrupt:
        print("xai-checks: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
