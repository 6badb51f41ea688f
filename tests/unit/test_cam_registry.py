"""The CAM method registry: metadata without torch, methods from other distributions' entry
points, what the engine hands each method, and Eigen-CAM's closed form."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from xai_checks.cam import CAM, METHODS
from xai_checks.cam.methods import CAMMethod, LayerInputs, eigencam

BLOCK_TORCH = "import sys; sys.modules['torch'] = None  # any import of torch now fails\n"


def run_python(code: str, *, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_metadata_and_option_choices_need_no_torch():
    out = run_python(
        BLOCK_TORCH
        + textwrap.dedent(
            """
            from xai_checks.cam.methods import METHODS, method_title
            from xai_checks.options import option
            for m in METHODS.values():
                print(m.name, m.title, ",".join(sorted(m.needs)), bool(m.reference), sep="|")
            print("choices", *option("method").choices)
            print("title", method_title("scorecam"), method_title("not-registered"))
            assert "torch" not in {k for k, v in sys.modules.items() if v is not None}
            """
        )
    )
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if "|" in line}
    assert rows["eigencam"] == ["Eigen-CAM", "activations", "True"]
    assert rows["scorecam"] == ["Score-CAM", "activations,model", "True"]
    assert rows["gradcam"] == ["Grad-CAM", "gradients", "True"]
    assert f"choices {' '.join(METHODS)}" in out
    assert "title Score-CAM not-registered" in out


TOY = """
from xai_checks.cam.methods import CAMMethod

def weights(inputs):
    return inputs.acts.mean(dim=(2, 3))  # activation-weighted, a stand-in

METHOD = CAMMethod(
    name="toycam", title="Toy-CAM", reference="-", needs=frozenset({"activations"}), weights=weights
)
"""


@pytest.fixture
def toy_distribution(tmp_path: Path) -> Path:
    """A distribution on sys.path that registers ``toycam`` (one file, one entry-point line)."""
    (tmp_path / "toy_cam.py").write_text(TOY)
    info = tmp_path / "toy_cam-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-cam\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[xai_checks.methods]\ntoycam = toy_cam:METHOD\n")
    return tmp_path


def test_a_registered_method_reaches_the_cli_and_the_plugin(toy_distribution):
    env = {"PYTHONPATH": os.pathsep.join([str(toy_distribution), os.environ.get("PYTHONPATH", "")])}
    out = run_python(
        textwrap.dedent(
            """
            import argparse
            from xai_checks.cam.methods import METHODS
            from xai_checks.options import add_cli_options, option
            parser = argparse.ArgumentParser()
            add_cli_options(parser, "study")
            print("parsed", parser.parse_args(["--method", "toycam"]).method)
            print("plugin", option("method").plugin, "toycam" in option("method").choices)
            print("title", METHODS["toycam"].title, list(METHODS)[-1])
            """
        ),
        env=env,
    )
    assert "parsed toycam" in out
    assert "plugin --xai-method True" in out  # the plugin's choices are the same row's
    assert "title Toy-CAM toycam" in out  # after the built-ins


def test_a_method_that_names_itself_otherwise_is_refused(toy_distribution):
    (toy_distribution / "toy_cam-0.1.dist-info" / "entry_points.txt").write_text(
        "[xai_checks.methods]\nothercam = toy_cam:METHOD\n"
    )
    env = {"PYTHONPATH": str(toy_distribution)}
    code = "from xai_checks.cam.methods import METHODS\ntry:\n    list(METHODS)\n"
    code += "except TypeError as exc:\n    print('refused', exc)\n"
    assert "must equal the method's name" in run_python(code, env=env)


def test_unknown_needs_are_refused():
    with pytest.raises(ValueError, match="needs \\['hessian'\\]"):
        CAMMethod(name="x", title="X", reference="", needs=frozenset({"hessian"}), weights=id)


def test_reading_what_a_method_did_not_ask_for_is_an_error():
    inputs = LayerInputs(acts=torch.zeros(1, 2, 3, 3))
    with pytest.raises(RuntimeError, match="'gradients'"):
        _ = inputs.gradients
    with pytest.raises(RuntimeError, match="'model'"):
        _ = inputs.logits


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()


def test_methods_without_gradients_run_no_backward(monkeypatch):
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    CAM(net(), layers=["1"], method="eigencam")(x)
    CAM(net(), layers=["1"], method="scorecam")(x)
    assert calls == []
    CAM(net(), layers=["1"], method="gradcam")(x)
    assert calls == [1]


def test_eigencam_of_rank_one_activations_is_that_component():
    """A = u (x) s + c: every channel k is s_k times one spatial pattern u (N, h, w) plus a
    per-channel constant. Centred, A is rank one, so the projection on its first component is
    |s| (u - mean u) up to sign, and the sign correction picks the side with the larger
    magnitude: the map is ReLU(+-(u - mean u)) normalised."""
    gen = torch.Generator().manual_seed(3)
    u = torch.rand(2, 5, 6, generator=gen) ** 3  # skewed: its positive side is the larger one
    s = torch.randn(2, 7, generator=gen)
    c = torch.randn(2, 7, 1, 1, generator=gen)
    acts = s[:, :, None, None] * u[:, None] + c
    terms = eigencam.weights(LayerInputs(acts=acts))
    projection = torch.einsum("nchw,nc->nhw", terms.values, terms.weights)
    pattern = u - u.mean(dim=(1, 2), keepdim=True)
    for i in range(2):
        sign = 1.0 if pattern[i].amax() >= -pattern[i].amin() else -1.0
        expected = sign * s[i].norm() * pattern[i]
        torch.testing.assert_close(projection[i], expected, rtol=1e-5, atol=1e-5)
    assert torch.linalg.vector_norm(terms.weights, dim=1).sub(1).abs().max() < 1e-6


def test_scorecam_weights_are_a_softmax_of_masked_scores():
    """On a net whose logit is a sum of its input, the masked score of channel k is the
    input's sum under mask k: computed here by hand and softmaxed."""
    acts = torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    from xai_checks.cam.methods import scorecam

    inputs = LayerInputs(
        acts=acts,
        x=x,
        targets=torch.tensor([0]),
        forward=lambda b: b.sum(dim=(1, 2, 3))[:, None],
    )
    up = torch.nn.functional.interpolate(acts, size=(4, 4), mode="bilinear", align_corners=True)
    lo, hi = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    expected = (masks * x).sum(dim=(2, 3)).softmax(dim=1)
    for batch in (1, 2, 3):
        got = scorecam.weights(inputs, batch_size=batch)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
