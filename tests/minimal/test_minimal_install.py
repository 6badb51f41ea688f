"""Runs in `tox -e minimal` (a plain `pip install .`, no extras, plus pytest) and in the
main suite: one claim through the plugin, on whatever photo set the plugin finds."""

from __future__ import annotations

import pytest


@pytest.mark.claim("native-captum-agreement")
def test_a_plugin_claim_runs(claim_verdict):
    assert claim_verdict.status.value == "SUPPORTED", claim_verdict.summary()
    assert claim_verdict.n > 0
