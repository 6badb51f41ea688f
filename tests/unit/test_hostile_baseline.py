"""A baseline is data from outside: every malformed, partial or hostile one fails the run
with a message, never a traceback and never a silent pass.

The inputs are the ones that once went through: an empty ``verdicts``, a renamed claim, a
``NaN`` effect, ``"row": [1]``, no ``study``, wrong types, huge integers, deep nesting and
ANSI escapes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from xai_checks.baseline import (
    MAX_BYTES,
    BaselineError,
    compare_with_baseline,
    coverage_problems,
    load_baseline,
)
from xai_checks.session import Settings, XaiSession

FINGERPRINT = "e1ad3aaef5cafbc2"


def _verdict(status: str = "SUPPORTED", effect: Any = 0.5) -> dict[str, Any]:
    return {"status": status, "row": {"effect": effect}, "tests": {"primary": {"effect": effect}}}


def _settings(tmp_path: Path, baseline: Path | None, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "data": "embedded", "labels": [], "layout": "auto", "weights": "msra",
        "control": "random", "alpha": 0.05, "device": "cpu", "limit": 200, "seed": 0,
        "batch_size": 8, "layers": None, "json_path": tmp_path / "claims.json",
        "baseline": baseline, "update_baseline": False, "baseline_optional": False,
        "tolerance": 0.1, "strict": (),
    }  # fmt: skip
    values.update(changes)
    return Settings(**values)


class _Judged:
    """A verdict as the session holds it (only ``to_dict`` is read at the end of the run)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def to_dict(self) -> dict[str, Any]:
        return self.doc


def _session(tmp_path: Path, baseline: Path | None, **changes: Any) -> XaiSession:
    config = SimpleNamespace(rootpath=tmp_path)
    session = XaiSession(config, _settings(tmp_path, baseline, **changes))
    session.studies["k"] = {"photoset": {"fingerprint": FINGERPRINT}}
    return session


def _good(tmp_path: Path, **verdicts: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "xai-checks/claims",
        "settings": _settings(tmp_path, None).key(),
        "study": {"photoset": {"fingerprint": FINGERPRINT}},
        "verdicts": verdicts or {"seed-depth-ratio": _verdict()},
    }


def _write(path: Path, doc: Any) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _judge(session: XaiSession, **verdicts: dict[str, Any]) -> None:
    for key, doc in verdicts.items():
        session.family[key] = (key, {})
        session.record(key, _Judged(doc))


# --------------------------------------------------------------------------- the gate


def test_a_matching_baseline_passes(tmp_path):
    path = _write(tmp_path / "b.json", _good(tmp_path))
    session = _session(tmp_path, path)
    _judge(session, **{"seed-depth-ratio": _verdict()})
    assert session.finish() is False, session.failures
    assert any("no regressions" in line for line in session.lines)


@pytest.mark.parametrize(
    "case",
    ["empty-verdicts", "claim-missing", "claim-renamed", "no-study", "no-fingerprint"],
)
def test_a_baseline_that_does_not_cover_the_run_fails(tmp_path, case):
    doc = _good(tmp_path)
    if case == "empty-verdicts":
        doc = {"verdicts": {}}
    elif case == "claim-missing":
        doc["verdicts"] = {}
    elif case == "claim-renamed":
        doc["verdicts"] = {"seed-depth-ratio-v2": _verdict()}
    elif case == "no-study":
        del doc["study"]
    else:
        doc["study"] = {"photoset": {}}
    path = _write(tmp_path / "b.json", doc)
    session = _session(tmp_path, path)
    _judge(session, **{"seed-depth-ratio": _verdict()})
    assert session.finish() is True
    assert session.failures and "--xai-baseline-optional" in session.failures[0]
    optional = _session(tmp_path, path, baseline_optional=True)
    _judge(optional, **{"seed-depth-ratio": _verdict()})
    assert optional.finish() is False
    assert any("--xai-baseline-optional" in line for line in optional.lines)


def test_a_baseline_claim_selected_but_not_judged_fails(tmp_path):
    """The claim's test was collected (selected) but skipped before a verdict, e.g. because
    the photos were missing: the gate must not go green on what it never checked."""
    doc = _good(tmp_path, **{"seed-depth-ratio": _verdict(), "sanity-randomisation": _verdict()})
    path = _write(tmp_path / "b.json", doc)
    session = _session(tmp_path, path)
    session.family["sanity-randomisation"] = ("sanity-randomisation", {})
    _judge(session, **{"seed-depth-ratio": _verdict()})
    assert session.finish() is True
    assert any("sanity-randomisation" in f and "not judged" in f for f in session.failures)


def test_selected_claims_with_no_verdict_at_all_fail(tmp_path):
    path = _write(tmp_path / "b.json", _good(tmp_path))
    session = _session(tmp_path, path)
    session.family["seed-depth-ratio"] = ("seed-depth-ratio", {})
    assert session.finish() is True
    assert "not judged" in session.failures[0]


def test_a_deselected_baseline_claim_is_not_compared_and_says_so(tmp_path):
    doc = _good(tmp_path, **{"seed-depth-ratio": _verdict(), "sanity-randomisation": _verdict()})
    session = _session(tmp_path, _write(tmp_path / "b.json", doc))
    _judge(session, **{"seed-depth-ratio": _verdict()})
    assert session.finish() is False, session.failures
    assert any("not selected in this run: sanity-randomisation" in x for x in session.lines)


def test_no_claim_selected_compares_nothing_and_passes(tmp_path):
    session = _session(tmp_path, _write(tmp_path / "b.json", _good(tmp_path)))
    assert session.finish() is False
    assert "no claim was selected" in session.lines[0]


def test_an_effect_on_one_side_only_is_a_failure_not_a_skip():
    old = {"verdicts": {"c": _verdict(effect=None)}}
    new = {"verdicts": {"c": _verdict(effect=0.4)}}
    (problem,) = compare_with_baseline(new, old, tolerance=0.1)
    assert "cannot be compared" in problem
    assert compare_with_baseline(new, new, tolerance=0.1) == []
    both_none = {"verdicts": {"c": _verdict(effect=None)}}
    assert compare_with_baseline(both_none, both_none, tolerance=0.1) == []


def test_coverage_names_each_side():
    baseline = {"verdicts": {"a": {}, "b": {}, "gone": {}}}
    problems = coverage_problems(judged=["a", "new"], selected=["a", "b", "new"], baseline=baseline)
    assert [p.split(":")[0] for p in problems] == ["new", "b"]


# --------------------------------------------------------------------------- malformed files


def _one(verdict: str) -> str:
    """A baseline text whose only verdict is ``verdict`` (JSON text)."""
    return '{"verdicts": {"c": ' + verdict + "}}"


def _effect(value: str) -> str:
    return _one('{"status": "SUPPORTED", "row": {"effect": ' + value + "}}")


#: (name, file text): every one is refused on load with a message naming what is wrong
HOSTILE = [
    ("nan-effect", _effect("NaN")),
    ("infinity", _effect("-Infinity")),
    ("overflowing-float", _effect("1e400")),
    ("huge-int", _effect("1" + "0" * 400)),
    ("effect-is-a-string", _effect('"0.9"')),
    ("row-is-a-list", _one('{"status": "SUPPORTED", "row": [1]}')),
    ("verdict-is-a-string", _one('"SUPPORTED"')),
    ("no-status", _one('{"row": {"effect": 0.5}}')),
    ("ansi-status", _one('{"status": "SUPPORTED\\u001b[2J"}')),
    ("settings-is-a-list", '{"settings": []}'),
    ("not-an-object", "[1, 2, 3]"),
    ("not-json", "{verdicts"),
    ("deep-nesting", "[" * 200_000 + "]" * 200_000),
    ("moderate-nesting", '{"settings": {"x": ' + "[" * 40 + "]" * 40 + "}}"),
]


@pytest.mark.parametrize("name,text", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_malformed_baseline_is_refused_on_load(tmp_path, name, text):
    doc = text
    if text.startswith('{"verdicts"') or text.startswith('{"settings"'):
        # the rest of a good baseline around the hostile part, so only that part is wrong
        good = json.dumps(_good(tmp_path))[1:]
        doc = (
            text[:-1]
            + ", "
            + good.replace('"verdicts"', '"_v"', 1).replace('"settings"', '"_s"', 1)
        )
    path = _write(tmp_path / "b.json", doc)
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert str(path) in str(info.value)
    # and the run fails with that message instead of a traceback
    session = _session(tmp_path, path)
    _judge(session, c=_verdict())
    assert session.finish() is True
    assert str(path) in session.failures[0]


def test_a_baseline_past_the_size_bound_is_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)
    with pytest.raises(BaselineError, match="bytes"):
        load_baseline(path)


def test_a_baseline_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "b.json"
    path.write_bytes(b'{"verdicts": "\xff\xfe"}')
    with pytest.raises(BaselineError, match="UTF-8"):
        load_baseline(path)


def test_the_shipped_baseline_loads(tmp_path):
    root = Path(__file__).resolve().parents[2]
    doc = load_baseline(root / "fixtures" / "baselines" / "imagenet-samples-300.json")
    assert doc["verdicts"]


def test_control_characters_never_reach_the_terminal(tmp_path):
    """A claim id is a key of the baseline (free text): the summary escapes it."""
    from xai_checks.fmt import printable

    evil = "seed\x1b[2J\x1b[1;1HREGRESSION none\rok"
    doc = _good(tmp_path, **{evil: _verdict()})
    session = _session(tmp_path, _write(tmp_path / "b.json", doc))
    session.family[evil] = (evil, {})
    assert session.finish() is True
    shown = [printable(f) for f in session.failures]
    assert all("\x1b" not in s and "\r" not in s for s in shown)
    assert any("\\x1b[2J" in s for s in shown)


def test_the_package_baseline_check_is_idempotent_on_its_input(tmp_path):
    """load_baseline never mutates what it read (the comparison reads it twice)."""
    doc = _good(tmp_path)
    path = _write(tmp_path / "b.json", doc)
    loaded = load_baseline(path)
    assert loaded == copy.deepcopy(doc)
