"""Defaults that more than one layer quotes: the option table sets them, the report's advice
names them. This module imports nothing, so any module may import it."""

from __future__ import annotations

__all__ = ["AUTO_LIMIT", "MAX_CONTROL_SEEDS"]

#: photos taken from the ImageNet samples when ``--data auto`` finds them and no --limit is set.
#: Enough for GridPG's targets and the sanity claim's sample on these photos within the main
#: job's time. The seed claim's residuals sit at its SESOI on these photos (all 1000 of them
#: read INCONCLUSIVE too), so no sample of them decides it. The suite's 300-photo baseline
#: sets ``--xai-limit=300`` in pytest's addopts.
AUTO_LIMIT = 400

#: the most control networks (``--control-seeds``): each one after the first reruns the seeded
#: samples (50 photos, 50 GridPG mosaics, 16 sanity photos, each with a fresh network), so the
#: study's time grows linearly with R and a typo such as 1000000000 would never finish
MAX_CONTROL_SEEDS = 100
