"""The published study, stated as tests, with the controls that say whether it means anything.

These run the real ImageNet ResNet-50 over real photos (the shared ImageNet samples, 200 by
default; ``--xai-limit all`` for all 1000) and its seeded, untrained twin as the null control.
The verdict table is printed at the end of the run and written to ``.xai-checks/claims.json``.
"""

from __future__ import annotations

import pytest

from xai_checks.claims import Status

pytestmark = pytest.mark.slow


@pytest.mark.claim("seed-depth-ratio")
def test_seed_study_as_specified(claim_verdict):
    """The seed's own test: ratio>0.85 differs across layer1..4 (Kruskal-Wallis p < alpha),
    medians rising with depth -- on the pretrained model."""
    primary = claim_verdict.primary
    medians = list(claim_verdict.medians["pretrained"].values())
    assert primary["pvalue"] < claim_verdict.claim.alpha, claim_verdict.summary()
    assert medians == sorted(medians) and medians[-1] > medians[0], medians


@pytest.mark.claim("seed-depth-ratio")
def test_seed_test_cannot_tell_trained_from_untrained(claim_verdict):
    """The confound the claim names: an untrained ResNet-50 passes the seed's test too.

    If this ever fails, the control no longer reproduces the effect and the seed claim may
    deserve SUPPORTED: look at the verdict table.
    """
    control = claim_verdict.controls["untrained"]
    assert control["ran"], "the untrained control did not run"
    assert control["passes"], f"untrained control: {control['test']}"


@pytest.mark.claim("seed-depth-ratio")
@pytest.mark.xfail(
    strict=True,
    reason="CONFOUNDED: the seed's ratio test passes on an "
    "untrained network and depends on map resolution (see the seed-depth-ratio claim)",
)
def test_seed_claim_is_supported(claim_verdict):
    assert claim_verdict.status is Status.SUPPORTED, claim_verdict.summary()


@pytest.mark.claim("depth-localisation-gridpg")
def test_deeper_layers_localise_the_label(claim_verdict):
    """Ground truth: GridPG mass in the target cell rises with depth (Page's L), layer4 is above
    chance and above the untrained control."""
    assert claim_verdict.status is Status.SUPPORTED, claim_verdict.summary()


@pytest.mark.xfail(
    strict=True,
    reason=(
        "REFUTED since the cascade re-initialises each module with its own reset_parameters() "
        "(issue 9): after randomising fc the median |rho| of the 8 sanity photos is 0.513, "
        "bound 0.5 (0.257 with the former kaiming-normal draw). One draw on 8 photos sits on "
        "the bound either way; issue 11's effect-based rules rework this claim"
    ),
)
@pytest.mark.claim("sanity-randomisation")
def test_layer4_map_depends_on_learned_parameters(claim_verdict):
    assert claim_verdict.status is Status.SUPPORTED, claim_verdict.summary()


@pytest.mark.claim("native-captum-agreement")
def test_native_and_captum_agree(claim_verdict):
    assert claim_verdict.status is Status.SUPPORTED, claim_verdict.summary()


@pytest.mark.claim("depth-localisation-boxes")
def test_deeper_layers_put_their_mass_in_the_box(claim_verdict):
    """Ground truth from bounding boxes (TinyImageNet-200 val, --xai-data <its root>).
    The shared ImageNet samples carry no boxes, so there this test skips and says so."""
    assert claim_verdict.status is Status.SUPPORTED, claim_verdict.summary()


def test_gridpg_n_is_the_number_of_distinct_target_photos(xai_verdict, xai_study):
    """No pseudo-replication: GridPG's n counts target photos, one mosaic each."""
    verdict = xai_verdict("depth-localisation-gridpg")
    grid = xai_study.result().gridpg
    targets = [spec["files"][spec["cell"]] for spec in grid.specs]
    assert len(targets) == len(set(targets)), "a photo was the target of two mosaics"
    assert verdict.n == len(set(targets))
    if grid.specs:  # (no mosaics at all when fewer than 4 classes are confidently classified)
        cap = xai_study.result().config.gridpg_mosaics or 10**9
        assert len(targets) == min(grid.n_candidates, cap)
