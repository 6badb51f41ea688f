"""Write a report folder atomically: build beside the target, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai_checks.report import builtin  # noqa: F401  (registers the built-in sections)
from xai_checks.report.html import render_html
from xai_checks.report.schema import results_document, validate_results
from xai_checks.report.sections import FigureFile, collect_sections, figure_png

if TYPE_CHECKING:
    from xai_checks.claims.base import Verdict
    from xai_checks.study import StudyResult

__all__ = [
    "REPORT_FILES",
    "REPORT_MARKER",
    "ReportExistsError",
    "is_report_folder",
    "report_folder",
    "write_report",
]

#: the files every report folder holds (plus one ``<figure>.png`` per figure)
REPORT_FILES = ("report.html", "results.json")

#: written last into every report folder: the files the writer put there. ``overwrite`` only
#: replaces a folder that holds this marker and nothing the marker does not list.
REPORT_MARKER = ".xai-checks-report.json"


def is_report_folder(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` holds an earlier xai-checks report and nothing else."""
    folder = Path(path)
    try:
        marker = json.loads((folder / REPORT_MARKER).read_text())
        written = set(marker["files"]) | {REPORT_MARKER}
        present = {entry.name for entry in os.scandir(folder)}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return marker.get("schema") == "xai-checks/report-folder" and present <= written


def report_folder(out_dir: str | os.PathLike[str]) -> Path:
    """Where a report for ``out_dir`` goes: absolute, with every symbolic link resolved (a
    link to a folder is written through, into the folder it names), so the checks before the
    run look at the folder the report will replace."""
    return Path(os.path.realpath(Path(out_dir).expanduser()))


def _writer_alive(name: str) -> bool:
    """Whether the process that made temporary folder ``name`` (``...-<pid>-...``) still
    runs on this machine."""
    try:
        pid = int(name.rsplit("-", 2)[-2])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(out: Path) -> list[str]:
    """Remove what a killed writer of ``out`` left beside it (its ``.<name>.tmp-<pid>-*`` and
    ``.<name>.old-<pid>-*`` folders), unless that writer still runs. Returns the names."""
    removed = []
    prefixes = (f".{out.name}.tmp-", f".{out.name}.old-")
    with contextlib.suppress(FileNotFoundError):
        for entry in out.parent.iterdir():
            if not entry.name.startswith(prefixes) or _writer_alive(entry.name):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return sorted(removed)


class ReportExistsError(FileExistsError):
    """The output folder already holds something and ``overwrite`` was not given."""


def _non_empty(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    except FileNotFoundError:
        return False


def _check_target(out: Path, overwrite: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ReportExistsError(f"{out} exists and is not a folder; refusing to replace it")
    if not out.exists() or not _non_empty(out):
        return
    if not overwrite:
        raise ReportExistsError(
            f"{out} already exists and is not empty; pass overwrite=True (--overwrite) to "
            "replace it, or choose another folder"
        )
    # Guard against replacing a folder that obviously is not a report.
    if not is_report_folder(out):
        raise ReportExistsError(
            f"refusing to overwrite {out}: it does not hold (only) an earlier xai-checks report"
        )
    danger = {Path("/"), Path.home().resolve()}
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved in danger or resolved == cwd or resolved in cwd.parents:
        raise ReportExistsError(
            f"refusing to overwrite {out}: it is the root, the home folder or holds the "
            "current folder"
        )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _swap_in(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``out`` (replacing it when allowed)."""
    _check_target(out, overwrite)
    if out.exists() and not _non_empty(out):
        with contextlib.suppress(FileNotFoundError):
            out.rmdir()
    if not out.exists():
        try:
            os.rename(tmp, out)
        except OSError as exc:  # another writer got there first
            if out.exists():
                raise ReportExistsError(f"{out} appeared while the report was written") from exc
            raise
        _fsync_dir(out.parent)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    _fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


def write_report(
    study: StudyResult,
    verdicts: Sequence[Verdict],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Path:
    """Write ``report.html``, ``results.json`` and one PNG per figure into ``out_dir``.
    ``files`` (name -> path) are moved in beside them (``maps.npz`` of ``--save-maps``).

    Everything is built in a hidden temporary folder beside ``out_dir`` and renamed into place
    only when complete, so an interrupted or failing run leaves no half-written report (and no
    temporary folder). An existing non-empty ``out_dir`` raises :class:`ReportExistsError`
    unless ``overwrite`` is true; then the old folder is renamed away, the new one renamed in,
    and the old one deleted. ``extra`` is stored verbatim in ``results.json`` (its
    ``"command"`` entry, a string or argv list, is shown as the command line).

    A symbolic link ``out_dir`` is resolved: the report replaces the folder it names. What a
    killed earlier write of the same folder left beside it is removed first.

    Returns the report folder's path.
    """
    out = report_folder(out_dir)
    _check_target(out, overwrite)  # fail fast, before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        results = results_document(study, verdicts, extra=extra)
        doc = results.to_dict()
        validate_results(doc)
        sections = collect_sections(study, verdicts, doc)
        for section in sections:
            for stem, figure in section.figures.items():
                # written once, beside the page, which links it (a Figure is saved once)
                _write(tmp / f"{stem}.png", figure_png(figure))
                section.figures[stem] = FigureFile(f"{stem}.png")
        text = json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False)
        _write(tmp / "results.json", (text + "\n").encode("utf-8"))
        page = render_html(study, verdicts, sections, results)
        _write(tmp / "report.html", page.encode("utf-8"))
        for name, source in (files or {}).items():
            if Path(name).name != name or (tmp / name).exists():
                raise ValueError(f"cannot add {name!r} to the report folder")
            shutil.move(source, tmp / name)
        listed = sorted(entry.name for entry in os.scandir(tmp))
        marker = {"schema": "xai-checks/report-folder", "files": listed}
        _write(tmp / REPORT_MARKER, json.dumps(marker, indent=1).encode("utf-8"))
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _fsync_dir(tmp)
        _swap_in(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
