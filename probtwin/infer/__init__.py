"""Stochastic variational inference: the ELBO's terms, the fitting loop, devices. No neuroscience."""

from probtwin.infer.devices import resolve_device
from probtwin.infer.elbo import ElboTerms, elbo_terms, local_elbo
from probtwin.infer.engine import FitConfig, History, run_fit
from probtwin.infer.seeding import rng_state, seeded, set_rng_state

__all__ = [
    "ElboTerms",
    "FitConfig",
    "History",
    "elbo_terms",
    "local_elbo",
    "resolve_device",
    "rng_state",
    "run_fit",
    "seeded",
    "set_rng_state",
]
