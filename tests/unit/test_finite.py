"""Non-finite numbers are errors, never silent.

A NaN input is refused; a float64 batch is cast to the model's dtype instead of dying in conv;
NaN logits are never read as class 0 (argmax of NaN), nor NaN maps as ratio 0 (a false
REFUTED).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from xai_checks._util import NonFiniteError, check_finite
from xai_checks.cam import GradCAM


class _Tiny(nn.Module):
    """conv -> ReLU ("block") -> GAP -> fc; ``poison`` puts NaN into the logits or the maps."""

    def __init__(self, poison: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.ReLU()
        self.fc = nn.Linear(4, 5)
        self.poison = poison
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for p in self.parameters():
                nn.init.uniform_(p, 0.1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.block(self.conv(x))
        if self.poison == "maps":
            # NaN in the hooked activation that the head then hides: finite logits, NaN maps.
            a = a * torch.where(torch.arange(a.shape[-1]) == 0, torch.nan, 1.0)
            pooled = torch.nan_to_num(a, nan=0.0).mean(dim=(2, 3))
        else:
            pooled = a.mean(dim=(2, 3))
        logits = self.fc(pooled)
        if self.poison == "logits":
            logits = logits * torch.nan
        return logits


def _batch() -> torch.Tensor:
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_is_a_value_error(bad: float) -> None:
    x = _batch()
    x[1, 0, 2, 2] = bad
    said = r"non-finite values in the input batch: .* in 1 of 3 items \(1\)"
    with pytest.raises(ValueError, match=said):
        GradCAM(_Tiny(), layers=["block"])(x, targets=0)


def test_float64_input_is_cast_to_the_models_dtype() -> None:
    x = _batch()
    model = _Tiny()
    single = GradCAM(model, layers=["block"])(x, targets=[0, 1, 2])
    double = GradCAM(model, layers=["block"])(x.double(), targets=[0, 1, 2])
    assert double.maps["block"].dtype == torch.float32
    # The float64 batch is cast to float32 once, exactly, so the maps are the same bits.
    assert torch.equal(single.maps["block"], double.maps["block"])


@pytest.mark.parametrize("targets", [None, [0, 1, 2]])
def test_nan_logits_are_an_error_naming_the_model(targets: list[int] | None) -> None:
    model = _Tiny("logits")
    model.xai_weights = type("W", (), {"source": "bogus-source"})()
    said = r"in the logits of _Tiny \(weights 'bogus-source'\): \d+ NaN"
    with pytest.raises(NonFiniteError, match=said):
        GradCAM(model, layers=["block"])(_batch(), targets=targets)


def test_nan_maps_are_an_error_naming_model_and_layer() -> None:
    model = _Tiny("maps")
    logits = model(_batch())
    assert bool(torch.isfinite(logits).all())  # the logits alone would not tell
    with pytest.raises(NonFiniteError, match=r"in the block Grad-CAM maps of _Tiny: \d+ NaN"):
        GradCAM(model, layers=["block"])(_batch(), targets=[0, 1, 2])


def test_check_finite_counts_nan_and_inf_and_passes_finite_and_integer_tensors() -> None:
    check_finite(torch.zeros(2, 3), what="x")
    check_finite(torch.tensor([1, 2]), what="x")
    counted = r"in x: 1 NaN and 2 infinite in 3 of 7 items \(1, 2, 6\)"
    with pytest.raises(NonFiniteError, match=counted):
        check_finite(torch.tensor([0.0, torch.nan, torch.inf, 1.0, 0.0, 0.0, -torch.inf]), what="x")


_NAN_MODEL = """
import torch
from torch import nn


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.block = nn.ReLU()
        self.fc = nn.Linear(4, 1000)

    def forward(self, x):
        return self.fc(self.block(self.conv(x)).mean(dim=(2, 3))) * torch.nan


def make() -> nn.Module:
    return NaNNet().eval()
"""


def test_cli_names_the_model_and_exits_1_instead_of_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: NaN logits are an error naming the model, never class 0 and verdicts."""
    from PIL import Image

    from xai_checks.cli import main

    (tmp_path / "nanmodel.py").write_text(_NAN_MODEL)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, wnid in enumerate(["n01440764", "n01443537"] * 2):
        pixels = np.random.default_rng(i).integers(0, 256, (64, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"{wnid}_{i}.JPEG")
    argv = ["check", "--model", f"{tmp_path / 'nanmodel.py'}:make", "--control", "none"]
    argv += ["--data", str(photos), "--phases", "ratio", "--layers", "block", "--quiet"]
    argv += ["--claim", "native-captum-agreement"]  # one layer: no depth claim applies
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite values in the logits of NaNNet" in err and "Traceback" not in err
