"""The floors pyproject.toml declares are the versions `tox -e oldest` installs and tests."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _floors() -> dict[str, Version]:
    """The lower bound of each declared runtime dependency (``>=`` only)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors: dict[str, Version] = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{line}: one >= floor, so tox -e oldest knows what to test"
        floors[canonicalize_name(req.name)] = lower[0]
    return floors


def _oldest_pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in (ROOT / "constraints-oldest.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: the oldest env pins exact versions"
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def test_the_oldest_env_pins_every_floor() -> None:
    floors, pins = _floors(), _oldest_pins()
    assert {"torch", "torchvision", "numpy", "scipy"} <= floors.keys()
    assert floors == {name: pins.get(name) for name in floors}


def test_torch_and_torchvision_floors_are_a_released_pair() -> None:
    # torchvision 0.N pairs with torch 2.(N-15): 0.19 with 2.4, 0.29 with 2.14
    floors = _floors()
    torch_minor = floors["torch"].minor
    assert floors["torch"].major == 2
    assert floors["torchvision"].minor == torch_minor + 15
