"""The suite's kept measurements (``kept_measurements`` in conftest.py): a value is reused only
under the same key, a changed input measures again, a failed measurement keeps nothing, and a
kept pytester run gives back its output and the files it wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

pytest_plugins = ["pytester"]


class FakeCache:
    """pytest's ``config.cache`` interface, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


@pytest.fixture
def kept(kept_measurements: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The fixture over an in-memory cache. What these tests reuse is theirs, not a gate's, so
    it leaves the run's list of kept measurements (after the test saw it recorded)."""
    kept_measurements.cache = FakeCache()
    yield kept_measurements
    request.node.user_properties[:] = [
        p for p in request.node.user_properties if p[0] != "kept_measurement"
    ]


def test_a_value_is_reused_only_under_the_same_inputs(
    kept: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    calls: list[int] = []

    def measure() -> dict[str, int]:
        calls.append(1)
        return {"value": len(calls)}

    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"one")
    x = torch.arange(4.0)
    assert kept("m", measure, inputs=(photo,), tensors=(x,)) == {"value": 1}
    assert kept("m", measure, inputs=(photo,), tensors=(x,)) == {"value": 1}
    assert len(calls) == 1
    photo.write_bytes(b"two")  # other bytes: measured again
    assert kept("m", measure, inputs=(photo,), tensors=(x,)) == {"value": 2}
    assert kept("m", measure, inputs=(photo,), tensors=(x + 1,)) == {"value": 3}
    assert kept("other", measure, inputs=(photo,), tensors=(x + 1,)) == {"value": 4}
    assert len(calls) == 4
    reused = [p for p in request.node.user_properties if p[0] == "kept_measurement"]
    assert reused == [("kept_measurement", "m")]  # the run lists what it reused


def test_nothing_is_kept_from_a_failed_measurement_or_without_a_cache(
    kept: Any, request: pytest.FixtureRequest
) -> None:
    def fail() -> None:
        raise AssertionError("the measurement failed")

    with pytest.raises(AssertionError):
        kept("m", fail)
    assert kept.cache.values == {}
    kept.cache = None  # -p no:cacheprovider, --xai-study-cache=none
    assert kept("m", lambda: 1) == 1
    assert kept("m", lambda: 2) == 2
    assert ("kept_measurement", "m") not in request.node.user_properties


def test_a_kept_pytester_run_writes_back_what_it_wrote(kept: Any, pytester: pytest.Pytester):
    pytester.makepyfile(test_x="def test_x(tmp_path):\n    open('out.txt', 'w').write('written')\n")
    first = kept.run("run", lambda: pytester.runpytest_inprocess("-p", "no:cacheprovider"),
                     root=pytester.path)  # fmt: skip
    first.assert_outcomes(passed=1)
    (pytester.path / "out.txt").unlink()
    again = kept.run("run", lambda: pytest.fail("a kept run does not run"), root=pytester.path)
    again.assert_outcomes(passed=1)
    assert (pytester.path / "out.txt").read_text() == "written"
