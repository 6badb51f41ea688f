"""Defaults that more than one layer quotes: the option table sets them, the report's advice
names them. This module imports nothing, so any module may import it."""

from __future__ import annotations

__all__ = ["AUTO_LIMIT", "MAX_CONTROL_SEEDS"]

#: photos taken from the ImageNet samples when ``--data auto`` finds them and no --limit is set.
#: Enough to decide every built-in claim on these photos: the seed claim's residual after
#: pooling sits near 0.75x its SESOI, a world the calibration (docs/calibration.md) decides
#: at n >= 300. The suite's 300-photo baseline sets ``--xai-limit=300`` in pytest's addopts.
AUTO_LIMIT = 400

#: the most control networks (``--control-seeds``): each one after the first reruns the seeded
#: samples (50 photos, 50 GridPG mosaics, 16 sanity photos, each with a fresh network), so the
#: study's time grows linearly with R and a typo such as 1000000000 would never finish
MAX_CONTROL_SEEDS = 100
