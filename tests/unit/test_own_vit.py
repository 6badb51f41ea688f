"""End to end: a user's own small Vision Transformer (torchvision's ``VisionTransformer``,
48 px input, 8 px patches, 4 blocks), trained here on scikit-learn's real handwritten digits,
run through the pytest plugin with a conftest of 8 lines that states the model and its
preprocessing (``xai_preprocess``), on the 100 held-out digits written as PNG files.

Every registered claim is marked, so every phase runs (the opt-in faithfulness phase too).
Verdicts are printed (``-s``) for the record; the test asserts what must hold whatever they
are: the ViT learned the digits, every claim reached a verdict, the layers picked are the ViT's
blocks, the study ran at the ViT's own input size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_own_model import _digits, _split, _train, _verdict_lines, _write_photos

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("one_thread")

#: the ViT's input edge and patch: a 6 x 6 grid of patch tokens and a class token
VIT_SIZE = 48
#: one-cycle epochs: held-out accuracy had stopped rising at this count (seed 0)
VIT_EPOCHS = 15
#: held-out accuracy the trained ViT must reach: a model that learned the digits (chance 0.1)
VIT_MIN_ACCURACY = 0.8

VIT = f'''
"""The user's model: a small ViT for {VIT_SIZE} px digits."""
import torch
import torchvision


def make():
    return torchvision.models.VisionTransformer(
        image_size={VIT_SIZE}, patch_size=8, num_layers=4, num_heads=4, hidden_dim=64,
        mlp_dim=128, num_classes=10,
    )


def trained_vit():
    net = make()
    net.load_state_dict(torch.load(__file__.replace("vit.py", "vit.pt"), weights_only=True))
    return net.eval()
'''

#: the user's whole conftest.py: the model and its preprocessing in one place
CONFTEST = f"""
import pytest
from vit import trained_vit
@pytest.fixture(scope="session")
def xai_model():
    return trained_vit()
@pytest.fixture(scope="session")
def xai_preprocess():
    return {{"input_size": {VIT_SIZE}, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}}
"""

#: one test per registered claim, each marked with it, so the study runs every phase the
#: claims need, the opt-in faithfulness phase included; verdicts are printed, not asserted
USER_TESTS = """
import pytest

@pytest.mark.parametrize("claim", [pytest.param(c, marks=pytest.mark.claim(c)) for c in {claims!r}])
def test_claim(xai_study, claim):
    verdict = xai_study.verdict(claim)
    print("VERDICT", claim, verdict.status.value, "n=%d" % verdict.n, "|", "; ".join(
        r if isinstance(r, str) else str(r) for r in verdict.reasons))
"""

CONFIG_TEST = """
import json

def test_config(xai_study):
    study = xai_study.result()
    print("CONFIG", json.dumps({
        "layers": list(study.config.layers),
        "input_size": study.config.preprocess.input_size,
        "accuracy": study.under_test.accuracy,
    }))
"""


def _write_vit_project(root: Path) -> None:
    """vit.py, its weights trained on the digits not held out, the held-out photos."""
    (root / "vit.py").write_text(VIT)
    images, labels = _digits()
    held, train = _split(labels)
    namespace: dict = {}
    exec(compile(VIT, "vit.py", "exec"), namespace)
    net = _train(namespace["make"], images[train], labels[train], epochs=VIT_EPOCHS, size=VIT_SIZE)
    torch.save(net.state_dict(), root / "vit.pt")
    _write_photos(root, images, labels, held)


@pytest.mark.slow
def test_plugin_runs_every_claim_on_the_users_trained_vit(pytester, kept_measurements):
    from xai_checks.claims import registered_claims

    claims = [c.id for c in registered_claims()]
    pytester.makeconftest(CONFTEST)
    assert len(CONFTEST.strip().splitlines()) <= 10
    pytester.makepyfile(test_user=USER_TESTS.format(claims=claims), test_config=CONFIG_TEST)
    pytester.syspathinsert()

    def train_and_run() -> pytest.RunResult:
        _write_vit_project(pytester.path)
        return pytester.runpytest(
            "-s",
            "-p",
            "no:cacheprovider",
            "--xai-data=photos",
            "--xai-classes=classes.txt",
            "--xai-limit=all",
            "--xai-faithfulness-photos=30",
            "--xai-control-seeds=1",
        )

    # training and the study on the digits: kept between runs of the suite by content
    result = kept_measurements.run("trained and run", train_and_run, root=pytester.path)
    text = result.stdout.str()
    lines = _verdict_lines(text)
    print("\nViT (4 blocks, 48 px) on the digits:\n  " + "\n  ".join(lines))
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, text[-3000:]
    assert {line.split()[0] for line in lines} == set(claims)  # every claim reached a verdict
    config = json.loads(next(ln for ln in result.stdout.lines if ln.startswith("CONFIG "))[7:])
    print("  config:", config)
    assert config["input_size"] == VIT_SIZE
    # the blocks (never the patch embedding), shallow to deep
    assert config["layers"] and all(
        layer.startswith("encoder.layers.encoder_layer_") for layer in config["layers"]
    )
    assert config["accuracy"] >= VIT_MIN_ACCURACY
