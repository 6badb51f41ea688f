"""Defaults that more than one layer quotes: the option table sets them, the report's advice
names them. This module imports nothing, so any module may import it."""

from __future__ import annotations

__all__ = ["AUTO_LIMIT"]

#: photos taken from the ImageNet samples when ``--data auto`` finds them and no --limit is set.
#: Enough to decide every built-in claim on these photos: the seed claim's real residual after
#: pooling is about 0.75x its SESOI, which the calibration decides (CONFOUNDED) 0.80 of the
#: time at n = 300; on a stratified 200 of the shared photos it stays INCONCLUSIVE, on 300,
#: 400 and all 1000 it is CONFOUNDED. The suite's 200-photo baseline sets ``--xai-limit=200``
#: in pyproject's pytest addopts.
AUTO_LIMIT = 400
