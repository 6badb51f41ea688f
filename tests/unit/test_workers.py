"""``--workers``: a CPU study spread over one-thread worker processes, and one exit code for
them (the numbers themselves are compared with a one-thread process in test_distributed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xai_checks import workers
from xai_checks.cli import main

#: a tiny CNN whose factory fails on the worker named by XAI_TEST_FAIL_RANK
USER_FILE = """
import os
import time
import torch
from torch import nn


def tiny():
    if os.environ.get("RANK") == os.environ.get("XAI_TEST_FAIL_RANK"):
        raise RuntimeError("factory failed on purpose on this worker")
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 1000),
    )


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny()

    def forward(self, x):
        time.sleep(1.0)
        return self.net(x)


def slow():
    return Slow()
"""


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "xai_checks", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _study(user: Path, out: Path) -> list[str]:
    return [
        "study", "--model", f"{user}:tiny", "--data", "embedded", "--limit", "4",
        "--input-size", "32", "--phases", "ratio", "--control", "none", "--quiet",
        "--out", str(out), "--workers", "2",
    ]  # fmt: skip


@pytest.fixture
def user(tmp_path: Path) -> Path:
    path = tmp_path / "user.py"
    path.write_text(textwrap.dedent(USER_FILE))
    return path


def test_two_workers_write_one_report(user: Path, tmp_path: Path) -> None:
    done = _cli(*_study(user, tmp_path / "r"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("report:") == 1  # rank 0 writes, once
    assert "2 ranks" in done.stderr
    assert (tmp_path / "r" / "results.json").is_file()


def test_a_usage_error_is_exit_2_said_once(tmp_path: Path) -> None:
    done = _cli("study", "--data", str(tmp_path / "absent"), "--workers", "2", "--quiet")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("no such folder") == 1
    assert "Traceback" not in done.stderr


def test_the_worker_that_failed_first_is_shown_and_its_code_returned(
    user: Path, tmp_path: Path
) -> None:
    done = _cli(*_study(user, tmp_path / "r"), env={"XAI_TEST_FAIL_RANK": "1"})
    assert done.returncode == 1
    assert "worker 1 of 2 failed" in done.stderr
    assert "factory failed on purpose on this worker" in done.stderr
    assert not (tmp_path / "r").exists()


def test_a_worker_left_waiting_is_stopped_after_the_grace(monkeypatch) -> None:
    monkeypatch.setattr(workers, "GRACE_S", 0.5)
    procs = [
        subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"]),
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]),
    ]
    start = time.monotonic()
    assert workers._wait(procs) == [3, -signal.SIGTERM]
    assert time.monotonic() - start < 60


@pytest.mark.parametrize(
    "codes,expected",
    [([0, 0], 0), ([2, 2], 2), ([1, 3], 1), ([0, 3], 3), ([-15, 1], 1), ([0, -9], 1)],
)
def test_one_exit_code_for_the_workers(codes: list[int], expected: int) -> None:
    assert workers._exit_code(codes) == expected


@pytest.mark.parametrize("args", [["--device", "cuda"], ["--save-maps"]])
def test_workers_refused_where_one_process_must_run(args: list[str], capsys) -> None:
    code = main(["study", "--workers", "2", "--data", "embedded", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert "--workers" in err or "CUDA" in err


def test_sigint_to_the_launcher_alone_stops_every_worker(user: Path, tmp_path: Path) -> None:
    """The launcher passes a SIGINT sent to it alone (not the terminal's, which reaches the
    whole group) on to the workers and exits 130 once they have stopped."""
    args = _study(user, tmp_path / "r")
    args[args.index(f"{user}:tiny")] = f"{user}:slow"  # a second per batch: time to interrupt
    args[args.index("--limit") + 1] = "40"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xai_checks", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    banner = proc.stderr.readline()  # rank 0 has loaded the model: the workers are running
    assert "2 ranks" in banner, banner + proc.communicate(timeout=300)[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert not (tmp_path / "r").exists()
