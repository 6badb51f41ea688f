"""Fixtures shared by the unit tests."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    """The shared ImageNet samples: ``XAI_CHECKS_IMAGENET_SAMPLES``, else ``shared`` beside the
    clone (or beside the folder of worktrees that holds it). A test that needs them is skipped,
    saying where they were looked for, when they are absent (CI has them).

    Not ``xai_checks.data.find_imagenet_samples``: that looks beside the working directory,
    which pytester moves into a temporary project, and in the user's cache."""
    given = os.environ.get("XAI_CHECKS_IMAGENET_SAMPLES")
    places = (
        [Path(given)]
        if given
        else [root / "shared" / "data" / "imagenet-samples" for root in REPO_ROOT.parents[:2]]
    )
    found = next((p for p in places if (p / "MANIFEST.tsv").is_file()), None)
    if found is None:
        pytest.skip(f"the shared photos are not at {' or '.join(map(str, places))}")
    return found


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny nets gain nothing from intra-op threads, and on a busy shared CPU OpenMP's
    synchronisation makes each call 10-50x slower. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LoopbackServer:
    """A static file server on 127.0.0.1 (never anywhere else) that records the paths asked
    for. It serves ``root``; ``url`` is its base URL, ending in ``prefix``."""

    def __init__(self, root: Path, *, prefix: str = "") -> None:
        self.root = root
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{prefix}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def fetched(self) -> list[str]:
        return sorted(Path(p).name for p in self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LoopbackServer]]:
    """Start :class:`LoopbackServer` s (``loopback(root, prefix=...)``); all are closed after the
    test. Proxy settings are cleared so that requests really go to 127.0.0.1."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers: list[LoopbackServer] = []

    def start(root: Path, *, prefix: str = "") -> LoopbackServer:
        servers.append(LoopbackServer(root, prefix=prefix))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def http_root(
    tmp_path: Path, loopback: Callable[..., LoopbackServer]
) -> tuple[Path, str, list[str]]:
    """A folder served on 127.0.0.1: (folder, base URL, list of requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    server = loopback(root)
    return root, server.url, server.requests


class Unprivileged:
    """Runs a check as a user whom file modes bind.

    Root reads and writes whatever the modes say, and CI runs as root, so a test of what a
    user sees on an unreadable file or a read-only folder would prove nothing there. As root,
    :meth:`run` forks and the child drops to ``nobody`` before the check (the interpreter and
    its imports are already loaded, so the child needs no access to them); otherwise the check
    runs in place. ``folder`` is a fresh folder that ``nobody`` may enter: pytest's own
    ``tmp_path`` sits under a folder only its owner can.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def run(self, check: Callable[[], None]) -> None:
        import os

        if os.geteuid() != 0:
            check()
            return
        import pwd
        import traceback

        try:
            uid = pwd.getpwnam("nobody").pw_uid
        except KeyError:
            uid = 65534
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop privileges, run, report, and leave without cleanup
            os.close(read_fd)
            status, text = 0, ""
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                check()
            except BaseException:
                status, text = 1, traceback.format_exc()
            os.write(write_fd, text.encode())
            os._exit(status)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            report = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise AssertionError(f"the check failed as an unprivileged user:\n{report}")


@pytest.fixture
def unprivileged() -> Iterator[Unprivileged]:
    """Run a check as a user bound by file modes, even when the suite runs as root."""
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="xai-unprivileged-"))
    folder.chmod(0o755)
    try:
        yield Unprivileged(folder)
    finally:
        for path in (folder, *folder.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                os.chmod(path, 0o755)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _cli_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """``xai-checks study`` / ``check`` called in-process stay in the test process whatever the
    thread count the suite runs with (``--workers auto`` would start one-thread worker
    processes); the workers have their own tests, which ask for them by number."""
    monkeypatch.setattr("xai_checks.workers.auto_workers", lambda cap: 1)


@pytest.fixture(scope="session")
def whole_package_imported() -> None:
    """Every module of the package, and the libraries it runs on, imported once.

    ``pytester.runpytest`` runs in this process and, after each run, drops the modules the run
    imported. Imported before any run, they stay: every run then sees one copy of each class
    (a kept study is pickled by the classes the code uses) and torchvision registers its
    operators once. A run that needs a process of its own says so with
    ``runpytest_subprocess``."""
    import importlib
    import pkgutil

    import xai_checks

    for info in pkgutil.walk_packages(xai_checks.__path__, prefix="xai_checks."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for name in ("captum.attr", "scipy.stats", "torchvision", "PIL.Image", "jinja2"):
        importlib.import_module(name)
