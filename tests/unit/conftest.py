"""Fixtures shared by the unit tests."""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
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


#: the variables that steer what a measurement computes (threads, devices, our paths), as the
#: suite started (some tests' fixtures clear ours)
_STARTING_ENVIRONMENT = sorted(
    (k, v)
    for k, v in os.environ.items()
    if k.startswith(("XAI_CHECKS_", "OMP_", "MKL_", "CUDA_", "TORCH_", "PYTORCH_"))
)


def _tree_state(path: Path) -> list[tuple[str, str]]:
    """Each file's relative name and sha256 (a missing path is an empty list): the same bytes
    under another folder or modification time are the same input."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if _input_file(p))
    return [
        (file.name if file == path else str(file.relative_to(path)), _sha256(file))
        for file in files
    ]


def _input_file(path: Path) -> bool:
    """A file a measurement reads: not Python's bytecode, nor a study the plugin kept."""
    parts = path.parts
    kept_study = (".xai-checks", "studies") in itertools.pairwise(parts)
    return path.is_file() and "__pycache__" not in parts and not kept_study


def _sha256(file: Path) -> str:
    st = file.stat()
    return _sha256_once(str(file.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_once(path: str, size: int, mtime_ns: int) -> str:
    """Read once per session for each size and time a file has (the shared photos are inputs
    of several kept measurements)."""
    from xai_checks.cache import sha256_file

    return sha256_file(path)


@functools.cache
def _suite_state() -> dict[str, object]:
    """What every kept measurement depends on: the package's code; the tests, fixtures and
    benchmarks (some tests run a benchmark's study); the project's settings; every installed
    distribution's version; the steering environment."""
    import hashlib
    from importlib.metadata import distributions

    from xai_checks.session import library_versions, package_digest

    digest = hashlib.sha256()
    for folder in ("tests", "fixtures", "benchmarks"):
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO_ROOT)).encode())
                digest.update(path.read_bytes())
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((REPO_ROOT / name).read_bytes())
    return {
        "package": package_digest(),
        "tests": digest.hexdigest(),
        # the thread count is read per measurement: fixtures change it
        "libraries": {k: v for k, v in library_versions().items() if k != "threads"},
        "installed": sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions()),
        "environment": _STARTING_ENVIRONMENT,
    }


class KeptMeasurements:
    """What a real-model gate measured, kept between runs in pytest's cache (``.pytest_cache``)
    under a key of everything it depends on: the package's code, the tests, every installed
    library's version, the CPU's kind and the thread count, the steering environment, and the
    inputs the test names (the shared photos, the converted weights, the data it is given).

    A second run on an unchanged tree asserts on the kept numbers, as the plugin's kept claims
    study does; any change to one of those computes them again. ``--cache-clear``, ``-p
    no:cacheprovider`` (as CI runs) or ``--xai-study-cache=none`` compute every one. Values
    are what JSON holds."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        config = request.config
        off = str(config.getoption("--xai-study-cache", default="") or "").lower() == "none"
        self.cache = None if off else getattr(config, "cache", None)

    def __call__(
        self,
        name: str,
        compute: Callable[[], object],
        *,
        inputs: tuple[Path, ...] = (),
        tensors: tuple[torch.Tensor, ...] = (),
    ):
        """``compute()``'s value, or the one kept under the same key: ``inputs`` are files or
        folders it reads, ``tensors`` data it is given (both by content)."""
        import hashlib

        from xai_checks.session import fingerprint

        key = fingerprint(
            {
                "test": self.request.node.nodeid,
                "name": name,
                "suite": _suite_state(),
                "threads": torch.get_num_threads(),
                "inputs": [_tree_state(p) for p in inputs],  # wherever they lie
                "tensors": [
                    [
                        str(t.dtype),
                        list(t.shape),
                        hashlib.sha256(t.contiguous().numpy()).hexdigest(),
                    ]
                    for t in (t.detach().cpu() for t in tensors)
                ],
            }
        )
        slot = f"xai-checks/kept-measurements/{key}"
        kept = None if self.cache is None else self.cache.get(slot, None)
        if kept is not None:
            self.request.node.user_properties.append(("kept_measurement", name))
            return kept
        value = compute()
        if self.cache is not None:
            self.cache.set(slot, value)
        return value

    def run(
        self, name: str, run: Callable[[], pytest.RunResult], *, root: Path
    ) -> pytest.RunResult:
        """A pytest run of the project at ``root`` (pytester's), kept with every file it wrote
        there: a kept run writes them back, so the test, and a later run of the same project,
        find the folder as a real run leaves it. The plugin's own kept studies stay out (they
        are large, and a run that finds none computes its study)."""

        def measure() -> dict[str, object]:
            before = dict(_tree_state(root))
            result = run()
            after = dict(_tree_state(root))
            return {
                "ret": int(result.ret),
                "outlines": result.outlines,
                "errlines": result.errlines,
                "files": {
                    f: base64.b64encode((root / f).read_bytes()).decode()
                    for f, digest in after.items()
                    if before.get(f) != digest
                },
            }

        kept = self(name, measure, inputs=(root,))
        assert isinstance(kept, dict)
        for relative, data in kept["files"].items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(base64.b64decode(data))
        return pytest.RunResult(kept["ret"], kept["outlines"], kept["errlines"], 0.0)


@pytest.fixture
def kept_measurements(request: pytest.FixtureRequest) -> KeptMeasurements:
    """Measurements of the slowest real-model gates, kept between runs by content."""
    return KeptMeasurements(request)
