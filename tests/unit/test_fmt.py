"""The one number formatter: p-values, effects and durations read the same everywhere."""

from __future__ import annotations

import math

import pytest

from xai_checks import fmt


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0321, "0.032"),
        (0.5, "0.5"),
        (0.001, "0.001"),
        (0.000999, "1.0e-03"),
        (4.06e-7, "4.1e-07"),
        (0.0, "< 1e-300"),
        (None, "–"),
        (math.nan, "–"),
        (math.inf, "–"),
        ("x", "–"),
    ],
)
def test_pvalue(p: object, text: str) -> None:
    assert fmt.pvalue(p) == text


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0.000733, "0.000733"),
        (12.3456, "12.3"),
        (1.2e-5, "1.2e-05"),
        (123456.0, "1.2e+05"),
        (12345.0, "12345"),
        (0, "0"),
        (None, "–"),
        (math.nan, "–"),
        ("layer1", "layer1"),
    ],
)
def test_number(x: object, text: str) -> None:
    assert fmt.number(x) == text


@pytest.mark.parametrize(
    ("s", "text"),
    [
        (60.07553958892822, "1 min 0 s"),
        (5.25, "5.2 s"),
        (42.4, "42 s"),
        (3725, "1 h 2 min"),
        (None, "–"),
        (-1, "–"),
    ],
)
def test_seconds(s: object, text: str) -> None:
    assert fmt.seconds(s) == text


def test_count() -> None:
    assert fmt.count(1, "photo") == "1 photo"
    assert fmt.count(3, "photo") == "3 photos"
    assert fmt.count(2, "class", "classes") == "2 classes"
