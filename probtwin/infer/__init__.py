"""Stochastic variational inference: the ELBO's terms, the fitting loop, devices. No neuroscience."""

from probtwin.infer.devices import resolve_device
from probtwin.infer.elbo import ElboTerms, elbo_terms
from probtwin.infer.engine import FitConfig, History, run_fit

__all__ = ["ElboTerms", "FitConfig", "History", "elbo_terms", "resolve_device", "run_fit"]
