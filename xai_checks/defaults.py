"""Defaults that more than one layer quotes: the option table sets them, the report's advice
names them. This module imports nothing, so any module may import it."""

from __future__ import annotations

__all__ = ["AUTO_LIMIT"]

#: photos taken from the ImageNet samples when ``--data auto`` finds them and no --limit is set.
#: Enough to decide every built-in claim on these photos: the seed claim's residual after
#: pooling sits near 0.75x its SESOI, a world the calibration (docs/calibration.md) decides
#: at n >= 300. The suite's 300-photo baseline sets ``--xai-limit=300`` in pytest's addopts.
AUTO_LIMIT = 400
