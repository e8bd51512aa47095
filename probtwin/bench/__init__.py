"""Benchmarks that print performance and accuracy figures (``probtwin bench ...``).

Tests check correctness; these measure speed and accuracy, always beside a baseline measured in
the same run.
"""

from probtwin.bench.accuracy import ridge_baseline, run_accuracy
from probtwin.bench.speed import plain_step_time, predict_memory, svi_step_time

__all__ = ["plain_step_time", "predict_memory", "ridge_baseline", "run_accuracy", "svi_step_time"]
