"""The study over torch.distributed ranks: disjoint shards, failures that fail every rank, and
the same science on 2 torchrun ranks as in one process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xai_checks.distributed import RankFailed, Shard
from xai_checks.study import _index_batches


def _torchrun(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "XAI_CHECKS_DIST_TIMEOUT": "120",  # a collective never waits longer than this
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args]
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 30])
def test_batches_are_disjoint_fixed_and_cover_every_photo(world, n):
    single = _index_batches(n, 4, Shard())
    shards = [_index_batches(n, 4, Shard(rank=r, world=world)) for r in range(world)]
    flat = sorted(i for shard in shards for batch in shard for i in batch)
    assert flat == list(range(n))  # every photo once: disjoint and complete
    # each rank computes exactly the batches one process would: same members, same size
    assert sorted(b for shard in shards for b in shard) == sorted(single)


def test_one_process_needs_no_process_group():
    assert Shard().run("ratio", lambda: 42) == [42]
    with pytest.raises(ValueError, match="bad shard"):
        Shard(rank=2, world=2)


def test_a_failing_rank_fails_every_rank_with_its_error(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from xai_checks.distributed import RankFailed, distributed_from_env

            with distributed_from_env("cpu") as (shard, _):
                def work():
                    if shard.rank == 1:
                        raise ValueError("photo 7 is cursed")
                    return shard.rank
                try:
                    shard.run("ratio", work)
                except RankFailed as exc:
                    print(f"rank {shard.rank}: {exc}".splitlines()[0], file=sys.stderr)
                    sys.exit(3)
            """
        )
    )
    proc = _torchrun(str(script), cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: study phase 'ratio' failed on rank 1 of 2: ValueError: photo 7" in (
            proc.stderr
        ), proc.stderr[-3000:]
    assert issubclass(RankFailed, RuntimeError)


# --------------------------------------------------------------------------- identical science


def _photos(tmp_path: Path) -> str:
    """12 shared ImageNet photos (the acceptance check's pick) if present, else the embedded
    photos (real photos shipped in installed packages)."""
    from xai_checks.data import find_imagenet_samples

    root = find_imagenet_samples()
    if root is None:
        return "embedded"
    chosen = sorted(root.glob("*.JPEG"))[2::83][:12]
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in chosen:
        (folder / photo.name).symlink_to(photo)
    return str(folder)


def _per_photo(doc: dict) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for name, model in doc["models"].items():
        for row in model["photos"]:
            for key, value in row.items():
                if isinstance(value, dict):
                    for layer, v in value.items():
                        if isinstance(v, int | float) and not isinstance(v, bool):
                            out[(name, row["file"], key, layer)] = float(v)
                        elif isinstance(v, list):
                            for i, x in enumerate(v):
                                out[(name, row["file"], key, layer, i)] = float(x)
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    out[(name, row["file"], key)] = float(value)
    return out


def _study_cli(out: Path, common: list[str], *, cwd: Path, threads: str, workers: str):
    return subprocess.run(
        [sys.executable, "-m", "xai_checks", "study", *common, "--out", str(out), *workers.split()],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": threads},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def _compared(doc: dict) -> dict:
    """What the comparison reads of one run's ``results.json`` (JSON, so it can be kept)."""
    return {
        "per_photo": [[list(k), v] for k, v in _per_photo(doc).items()],
        "gridpg": doc["gridpg"]["scores"],
        "steps": doc["sanity"]["steps"],
        "rho": doc["sanity"]["rho"],
        "models": doc["provenance"]["models"],
        "status": {v["claim"]["id"]: v["status"] for v in doc["verdicts"]},
    }


@pytest.mark.slow
def test_two_torchrun_ranks_and_two_workers_give_the_single_process_numbers_and_verdicts(
    tmp_path, kept_measurements
):
    """A one-thread process, two torchrun ranks and ``--workers auto`` started from a
    two-thread process (two one-thread workers) compute every photo the same way: the
    per-photo numbers agree bit for bit, whatever the thread count the command started with."""
    from xai_checks.data import find_imagenet_samples
    from xai_checks.models import _cache_paths

    data = _photos(tmp_path)
    common = ["--data", data, "--quiet", "--mosaics", "8", "--limit", "12"]

    def measure() -> dict:
        one = _study_cli(tmp_path / "r1", common, cwd=tmp_path, threads="1", workers="--workers 1")
        assert one.returncode == 0, one.stderr[-3000:]
        two = _torchrun(
            "-m", "xai_checks", "study", *common, "--out", str(tmp_path / "r2"), cwd=tmp_path
        )
        assert two.returncode == 0, two.stderr[-3000:]
        assert two.stdout.count("report:") == 1  # rank 0 writes, once
        auto = _study_cli(tmp_path / "r3", common, cwd=tmp_path, threads="2", workers="")
        assert auto.returncode == 0, auto.stderr[-3000:]
        assert "2 ranks" in auto.stderr and auto.stdout.count("report:") == 1
        return {
            run: _compared(json.loads((tmp_path / run / "results.json").read_text()))
            for run in ("r1", "r2", "r3")
        }

    shared = find_imagenet_samples()
    inputs = (_cache_paths()[0], *([shared] if shared is not None else []))
    runs = kept_measurements("three runs", measure, inputs=inputs)
    a = runs["r1"]
    for other in ("r2", "r3"):
        b = runs[other]
        pa, pb = {tuple(k): v for k, v in a["per_photo"]}, {tuple(k): v for k, v in b["per_photo"]}
        assert pa and pa.keys() == pb.keys()
        assert all(pa[k] == pb[k] or (math.isnan(pa[k]) and math.isnan(pb[k])) for k in pa)
        for key in ("gridpg", "steps", "rho", "models"):
            assert a[key] == b[key], key
        assert a["status"] and a["status"] == b["status"]
