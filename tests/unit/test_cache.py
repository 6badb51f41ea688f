"""Unit tests for xai_checks.cache: atomic writes, the cache folder, locks and hashes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xai_checks.cache import ENV_CACHE, atomic_write, cache_dir, cache_lock, sha256_file


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------
# atomic_write


def test_atomic_write_success_replaces_target_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "data.bin"
    with atomic_write(target) as handle:
        handle.write(b"hello")
        # Nothing is visible at the target until the body finishes.
        assert not target.exists()
    assert target.read_bytes() == b"hello"
    assert _listing(target.parent) == ["data.bin"]

    with atomic_write(target, "w") as handle:
        handle.write("text mode")
    assert target.read_text() == "text mode"
    assert _listing(target.parent) == ["data.bin"]


def test_atomic_write_leaves_existing_target_untouched_when_body_raises(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"original")
    before = target.stat()
    with pytest.raises(ValueError, match="boom"), atomic_write(target) as handle:
        handle.write(b"half-written replacement")
        raise ValueError("boom")
    assert target.read_bytes() == b"original"
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert _listing(tmp_path) == ["data.bin"], "the temporary file must be removed"


def test_atomic_write_creates_nothing_when_body_raises(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as handle:
        handle.write(b"partial")
        raise KeyboardInterrupt
    assert _listing(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# cache_dir


def test_cache_dir_honours_xai_checks_cache_over_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    sub = cache_dir("weights")
    assert sub == tmp_path / "mine" / "weights"
    assert sub.is_dir()
    assert not (tmp_path / "xdg").exists()


def test_cache_dir_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(ENV_CACHE, "~/somewhere")
    assert cache_dir() == tmp_path / "somewhere"


def test_cache_dir_honours_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "xai-checks"
    assert cache_dir("photos") == tmp_path / "xdg" / "xai-checks" / "photos"
    assert (tmp_path / "xdg" / "xai-checks" / "photos").is_dir()


def test_cache_dir_falls_back_to_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CACHE, "")  # empty means unset
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "xai-checks"
    assert cache_dir().is_dir()


# ----------------------------------------------------------------------------------------------
# sha256_file and cache_lock


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_file(path, chunk=7) == expected
    assert sha256_file(tmp_path / "blob", chunk=1 << 20) == expected


_TRY_LOCK = """
import sys
from filelock import FileLock, Timeout
try:
    with FileLock(sys.argv[1], timeout=0.2):
        pass
except Timeout:
    sys.exit(3)
"""


def _other_process_gets_lock(lock_file: Path) -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", _TRY_LOCK, str(lock_file)], capture_output=True, timeout=60
    )
    assert proc.returncode in (0, 3), proc.stderr.decode()
    return proc.returncode == 0


def test_cache_lock_excludes_another_process(tmp_path: Path) -> None:
    target = tmp_path / "weights.pt"
    lock_file = Path(str(target) + ".lock")
    with cache_lock(target):
        assert lock_file.exists()
        assert not _other_process_gets_lock(lock_file)
    assert _other_process_gets_lock(lock_file)
