"""The user's cache: where converted weights and downloaded photo sets live.

Everything written here is written atomically (a temporary file in the same
folder, then ``os.replace``) and guarded by a file lock, so that two processes
doing the same work at once both succeed and the work is done once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

__all__ = ["atomic_write", "cache_dir", "cache_lock", "sha256_file"]

ENV_CACHE = "XAI_CHECKS_CACHE"


def cache_dir(sub: str | None = None) -> Path:
    """The cache folder (created if needed).

    ``$XAI_CHECKS_CACHE`` wins; else ``$XDG_CACHE_HOME/xai-checks``; else
    ``~/.cache/xai-checks``.
    """
    root = os.environ.get(ENV_CACHE)
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "xai-checks"
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
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


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success move it into place.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
