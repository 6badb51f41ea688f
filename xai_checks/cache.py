"""The user's cache: where converted weights and downloaded photo sets live.

Everything written here is written atomically (a temporary file in the same folder, then
``os.replace``), with the permissions the user's umask gives (not ``mkstemp``'s 0600), and
guarded by a file lock, so that two processes doing the same work at once both succeed and the
work is done once. Readers need no lock: a file is either absent or complete.

:func:`download_checked` is the package's one downloader (weights and photos alike).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

from filelock import FileLock

__all__ = [
    "ENV_CACHE",
    "TEMP_PREFIX",
    "CacheError",
    "DownloadError",
    "atomic_write",
    "cache_dir",
    "cache_lock",
    "download_checked",
    "remove_stale",
    "sha256_file",
    "temp_folder",
]

ENV_CACHE = "XAI_CHECKS_CACHE"
#: Name prefix of the temporary folders and files this package leaves only when killed.
TEMP_PREFIX = ".xai-tmp-"


class CacheError(OSError):
    """The cache folder cannot be used (it is a file, or cannot be created); says which."""


class DownloadError(OSError):
    """A download that failed or did not match its hash: ``kind`` is ``"hash"``, ``"http"``
    (an HTTP error status) or ``"network"`` (unreachable, timed out, cut short); ``reason``
    says what happened."""

    def __init__(self, url: str, reason: str, *, kind: Literal["hash", "http", "network"]):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.kind = kind


def _cache_root() -> tuple[Path, str]:
    root = os.environ.get(ENV_CACHE)
    if root:
        return Path(root).expanduser(), f"${ENV_CACHE}"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "xai-checks", "$XDG_CACHE_HOME/xai-checks"
    return Path.home() / ".cache" / "xai-checks", "~/.cache/xai-checks"


def cache_dir(sub: str | None = None) -> Path:
    """The cache folder (created if needed).

    ``$XAI_CHECKS_CACHE`` wins; else ``$XDG_CACHE_HOME/xai-checks``; else
    ``~/.cache/xai-checks``. Raises :class:`CacheError` when it is a file or cannot be created.
    An existing read-only cache is returned as it is: reading valid files from it works.
    """
    base, named = _cache_root()
    path = base / sub if sub else base
    if path.is_dir():
        return path
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise CacheError(
                f"the cache folder {path} ({named}) cannot be used: {part} is a file, not a "
                f"folder. Point ${ENV_CACHE} at a folder."
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"cannot create the cache folder {path} ({named}): {exc.strerror or exc}. "
            f"Point ${ENV_CACHE} at a writable folder."
        ) from exc
    return path


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def cache_lock(path: str | os.PathLike[str], *, timeout: float = 600.0) -> Iterator[None]:
    """Hold an inter-process lock named after ``path`` (``path + '.lock'``)."""
    lock = FileLock(str(path) + ".lock", timeout=timeout)
    with lock:
        yield


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii") as status,
    ):
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success move it into place.

    The file gets the permissions a plain ``open`` would (0666 less the umask). On an
    exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{target.name}.", suffix=".part", dir=target.parent
    )
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def temp_folder(parent: str | os.PathLike[str], *, owner: str) -> Iterator[Path]:
    """A temporary folder inside ``parent``, removed after use even on errors.

    ``owner`` is the name of the file whose lock the caller holds; a folder that a killed
    process left is removed by ``remove_stale(parent, owner=owner)`` under that lock.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{owner}.", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale(folder: str | os.PathLike[str], *, owner: str | None = None) -> list[str]:
    """Remove the temporary files and folders that a killed process left in ``folder``.

    Those of :func:`atomic_write` and :func:`temp_folder` for ``owner`` (a file name), or for
    every owner when ``owner`` is None. Call it only while holding the lock that guards those
    writes (then no live process owns them). Returns the names removed, sorted.
    """
    prefix = TEMP_PREFIX if owner is None else f"{TEMP_PREFIX}{owner}."
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in Path(folder).iterdir():
            if not entry.name.startswith(prefix):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            removed.append(entry.name)
    return sorted(removed)


def _hash_matches(digest: str, expected: str) -> bool:
    """A full 64-hex sha256 must be equal; a shorter one (torchvision's 8-hex file-name
    prefix) must be a prefix of it."""
    expected = expected.lower()
    return digest == expected if len(expected) == 64 else digest.startswith(expected)


def download_checked(
    url: str, target: str | os.PathLike[str], *, sha256: str, timeout: float = 60.0
) -> Path:
    """Stream ``url`` into ``target`` atomically; ``target`` appears only if its sha256 matches.

    ``sha256`` is the full hex digest, or a prefix of it where only that is published. Raises
    :class:`DownloadError` (HTTP errors, an unreachable host, a timeout, a hash mismatch);
    ``target`` is then untouched and no partial file is left.
    """
    if len(sha256) < 8 or any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"sha256 must be at least 8 hex digits, not {sha256!r}")
    destination = Path(target)
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "xai-checks"})
    try:
        with (
            urllib.request.urlopen(request, timeout=timeout) as response,
            atomic_write(destination) as out,
        ):
            while block := response.read(1 << 16):
                digest.update(block)
                out.write(block)
            got = digest.hexdigest()
            if not _hash_matches(got, sha256):
                raise DownloadError(
                    url,
                    f"sha256 {got[:16]}... does not match the expected {sha256[:16]}...",
                    kind="hash",
                )
    except urllib.error.HTTPError as exc:
        raise DownloadError(url, f"HTTP {exc.code} {exc.reason}", kind="http") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(url, f"cannot download: {exc.reason}", kind="network") from exc
    except DownloadError:
        raise
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC):
            raise  # a local write problem, not a download one: let it say so
        raise DownloadError(url, f"cannot download: {exc}", kind="network") from exc
    return destination
