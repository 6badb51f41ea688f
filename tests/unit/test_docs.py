"""The docs quote the package's own tables: generated at build time, never copied by hand.

``scripts/docs_hooks.py`` is the MkDocs hook that fills the ``<!-- xai-checks: NAME -->``
markers; these tests run it without MkDocs, so they need no docs dependencies.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_marker_of_every_page_is_filled(page: Path) -> None:
    filled = hooks.fill(page.read_text(encoding="utf-8"))
    assert hooks.MARK.search(filled) is None


def test_an_unknown_marker_fails_the_build() -> None:
    with pytest.raises(KeyError, match="unknown docs marker 'no-such-table'"):
        hooks.fill("<!-- xai-checks: no-such-table -->")


def test_the_cli_reference_lists_every_option_of_both_front_ends() -> None:
    from xai_checks.options import OPTIONS

    page = hooks.fill((DOCS / "cli.md").read_text(encoding="utf-8"))
    for row in OPTIONS:
        for flag in (row.cli, row.plugin):
            if flag:
                assert f"`{flag}`" in page, flag


def test_every_registered_claim_has_a_page_in_the_nav() -> None:
    from xai_checks.claims import registered_claims

    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    facts = hooks.fill("<!-- xai-checks: claim-facts -->")
    for claim in registered_claims():
        page = DOCS / "claims" / f"{claim.id}.md"
        assert page.exists(), f"{claim.id}: no docs/claims/{claim.id}.md"
        assert f"<!-- xai-checks: claim:{claim.id} -->" in page.read_text(encoding="utf-8")
        assert f"claims/{claim.id}.md" in nav, claim.id
        assert f"`{claim.id}`" in facts


def test_the_readme_legend_is_the_one_definition() -> None:
    """The README cannot run the hook, so a test keeps its copy equal to VERDICT_LEGEND."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- verdict-legend -->\n(.*?)<!-- /verdict-legend -->", readme, re.S)
    assert found, "README.md lost its verdict legend markers"
    assert found.group(1) == hooks.verdict_legend()


def test_the_docs_show_the_committed_calibration_table() -> None:
    from xai_checks.calibration import readme_table

    page = (DOCS / "claims" / "index.md").read_text(encoding="utf-8")
    assert "<!-- xai-checks: calibration-summary -->" in page
    doc = json.loads((DOCS / "calibration.json").read_text(encoding="utf-8"))
    assert readme_table(doc) in hooks.fill(page)


def test_the_terminal_table_shows_the_one_legend() -> None:
    """Under the table, the meaning of each verdict it shows, word for word VERDICT_LEGEND."""
    from xai_checks.claims import Claim, Status, Verdict
    from xai_checks.claims.base import VERDICT_LEGEND
    from xai_checks.table import verdict_lines

    class Probe(Claim):
        id = "probe"

    every = {f"probe-{s.value}": Verdict(Probe(), s, [], 10) for s in Status}
    lines = verdict_lines(every)
    for status, text in VERDICT_LEGEND.items():
        assert f"{status}: {text}" in lines
    one = verdict_lines({"probe": Verdict(Probe(), Status.REFUTED, [], 10)})
    shown = [line for line in one if line.split(":")[0] in VERDICT_LEGEND]
    assert shown == [f"REFUTED: {VERDICT_LEGEND['REFUTED']}"]


def test_the_readme_verdict_table_is_the_committed_baselines() -> None:
    """The README's table of the verdicts `make test` checks shows each claim's verdict and n
    as the committed baseline records them, so the page cannot keep an older run's table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| ([A-Z]+) \| (\d+) \|", readme, re.M)
    baseline = json.loads(
        (ROOT / "fixtures" / "baselines" / "imagenet-samples-300.json").read_text(encoding="utf-8")
    )
    assert {claim for claim, _, _ in rows} == set(baseline["verdicts"]), rows
    for claim, status, n in rows:
        recorded = baseline["verdicts"][claim]
        assert (status, int(n)) == (recorded["status"], recorded["n"]), claim
