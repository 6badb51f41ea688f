"""Grad-CAM throughput benchmarks (not part of the unit test run)."""
