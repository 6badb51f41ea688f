"""Words that are true: a model is "pretrained" only when its weights are known to be trained,
the embedded-photos note appears only when the embedded photos were used, and the closing hint
fits the model's classes."""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from xai_checks.models import WeightsInfo, reinitialised_copy
from xai_checks.report.naming import see_more
from xai_checks.session import XaiSession
from xai_checks.study import run_name


def test_only_known_trained_weights_are_called_pretrained():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert run_name(model) == "under_test"  # a user's model object
    model.xai_weights = WeightsInfo("random", "msra", None, None)
    assert run_name(model) == "under_test"
    model.xai_weights = WeightsInfo("user", "Net", None, None)
    assert run_name(model) == "under_test"
    model.xai_weights = WeightsInfo("msra", "msra", None, None)
    assert run_name(model) == "pretrained"
    assert run_name(reinitialised_copy(model)) == "under_test"


def _summary(photoset_name: str) -> list[str]:
    fake = SimpleNamespace(
        studies={"k": {"key": "k", "photoset": {"name": photoset_name}, "seconds": 1.0}},
        settings=SimpleNamespace(data_note="claims ran on the small embedded set"),
        by_claim=dict,
    )
    return XaiSession.summary_lines(fake)  # type: ignore[arg-type]


def test_embedded_note_only_when_the_embedded_photos_were_used():
    assert any("embedded set" in line for line in _summary("embedded"))
    assert not any("embedded set" in line for line in _summary("my-photos"))


def test_the_closing_hint_fits_a_model_with_its_own_classes():
    starved = [SimpleNamespace(claim=SimpleNamespace(id="seed-depth-ratio"), insufficient=True)]
    imagenet = SimpleNamespace(photoset={"classes": "imagenet-1k", "n_used": 8})
    own = SimpleNamespace(photoset={"classes": "classes.txt", "n_classes": 5, "n_used": 24})
    assert any("--limit 400" in line for line in see_more(starved, imagenet))
    hint = " ".join(see_more(starved, own))
    assert "--limit 400" not in hint and "imagenet" not in hint.lower()
    assert "5 classes" in hint and "24 were used" in hint


def test_target_is_true_predicted_or_one_class():
    import pytest

    from xai_checks.study import StudyConfig, _targets

    labels = __import__("torch").tensor([1, 2])
    assert _targets(StudyConfig(target="true").target, labels) is labels
    assert _targets(StudyConfig(target="predicted").target, labels) is None
    assert _targets(StudyConfig(target=104).target, labels) == 104
    for bad in (-1, True, "wallaby"):
        with pytest.raises(ValueError, match="target must be"):
            StudyConfig(target=bad)  # type: ignore[arg-type]
