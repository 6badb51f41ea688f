"""Claims registered from user code (:func:`register_claim`) under careless or hostile use:
an id that cannot be a marker's or a baseline's key, the same claim registered twice with
other settings, and an ``evaluate`` that returns something other than a verdict are each
refused with a message naming the fix; a notebook cell run again is no error."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from xai_checks.claims import Claim, evaluate, get_claim, register_claim, registry
from xai_checks.claims.registry import ClaimRegistrationError


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test registers into an empty set of claims from code, dropped afterwards."""
    monkeypatch.setattr(registry, "_FROM_CODE", {})
    yield


def _claim_class(claim_id: str, *, returns: Any = None, raises: BaseException | None = None):
    """A claim class defined the way a conftest or a notebook cell defines one (the same
    module and qualified name every time it runs)."""

    class UserClaim(Claim):
        id = claim_id
        title = "a claim from user code"
        defaults: ClassVar[dict[str, Any]] = {"k": 1}

        def evaluate(self, study: Any) -> Any:
            if raises is not None:
                raise raises
            return returns

    return UserClaim


@pytest.mark.parametrize(
    "claim_id",
    ["two words", "line\nbreak", "<b>bold</b>", "-leading-dash", "tab\there", "ünïcode"],
)
def test_an_id_that_is_no_entry_point_name_is_refused(claim_id):
    with pytest.raises(ClaimRegistrationError, match="not an entry-point name"):
        register_claim(_claim_class(claim_id))
    assert claim_id not in registry._FROM_CODE


def test_the_same_class_with_other_settings_is_refused_not_swapped():
    cls = _claim_class("user-claim")
    first = register_claim(cls(k=5))
    with pytest.raises(ClaimRegistrationError, match=r"already registered with other settings"):
        register_claim(cls)
    assert get_claim("user-claim") is first and first.params["k"] == 5


def test_an_equal_claim_registered_again_changes_nothing():
    cls = _claim_class("user-claim")
    first = register_claim(cls)
    assert register_claim(cls) is first
    assert get_claim("user-claim") is first


def test_a_class_defined_again_where_it_was_replaces_the_earlier_one():
    """A notebook cell run again defines a new class object of the same name and module."""
    first = register_claim(_claim_class("user-claim"))
    again = register_claim(_claim_class("user-claim"))
    assert type(again) is not type(first)
    assert get_claim("user-claim") is again


def test_another_class_with_a_taken_id_is_refused():
    register_claim(_claim_class("user-claim"))

    class Impostor(Claim):
        id = "user-claim"

    with pytest.raises(ClaimRegistrationError, match="already registered by"):
        register_claim(Impostor)
    with pytest.raises(ClaimRegistrationError, match="already registered by"):
        register_claim(_claim_class("seed-depth-ratio"))  # a built-in is never redefined


@pytest.mark.parametrize("returns", ["SUPPORTED", None, {"status": "SUPPORTED"}])
def test_an_evaluate_that_returns_no_verdict_names_the_claim_and_the_fix(returns):
    claim = _claim_class("user-claim", returns=returns)(layers=("a", "b", "c"))
    with pytest.raises(TypeError, match=r"'user-claim' \(.*UserClaim\)\.evaluate returned") as info:
        evaluate(claim, SimpleNamespace())
    assert "not a Verdict" in str(info.value) and "self.verdict(study, n)" in str(info.value)


def test_an_evaluate_that_raises_reaches_the_user_unchanged():
    claim = _claim_class("user-claim", raises=RuntimeError("claim boom"))(layers=("a",))
    with pytest.raises(RuntimeError, match="claim boom"):
        evaluate(claim, SimpleNamespace())
