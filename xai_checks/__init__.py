"""xai-checks: explainability claims, run as tests."""

from __future__ import annotations

__version__ = "0.1.0"
