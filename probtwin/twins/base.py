"""The shared twin: its sessions, noise models and fitting.

A twin is its Pyro model: a subclass writes its generative story (``model``) and its posterior
(``guide``) over a batch of one session's trials, plus the ``nn`` blocks they use. This base
class holds what every twin shares: the sessions (:class:`~probtwin.data.registry.SessionRegistry`),
a noise model per session, fitting by SVI, saving (:mod:`probtwin.twins.persistence`). Queries
come as mixins that run the model through the query engine: :mod:`probtwin.twins.queries`,
:mod:`probtwin.twins.evaluation`, :mod:`probtwin.twins.latent`, :mod:`probtwin.arviz`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from probtwin.data.recording import Recording
from probtwin.data.registry import SessionRegistry, SessionSpec, response_stats
from probtwin.errors import DataError
from probtwin.infer import FitConfig, History, elbo_terms, resolve_device
from probtwin.twins.noise import NoiseModel, make_noise
from probtwin.twins.persistence import Persistent, load
from probtwin.twins.posterior import WholeTwinPosterior, fit_posterior

__all__ = ["SessionSpec", "Twin", "load"]  # SessionSpec and load re-exported where they were


class Twin(WholeTwinPosterior, SessionRegistry, Persistent, nn.Module):
    """Base of every twin. Subclasses implement ``model`` and ``guide`` (and, for the
    stimulus-response queries, ``_draws`` and ``_location``).

    Parameters
    ----------
    recordings : Recording or list of Recording
        One recording per session; all share the core.
    likelihood : str
        Observation model (see :mod:`probtwin.twins.likelihoods`; ``"flow"`` for the flows).
    config : dict
        The subclass's settings, saved with the twin; ``noise``, ``latent_rank`` and
        ``dequantize`` choose the noise model (see :mod:`probtwin.twins.noise`).
    """

    def __init__(
        self,
        recordings: Recording | list[Recording] | None,
        likelihood: str,
        config: dict,
        specs: list[SessionSpec] | None = None,
    ) -> None:
        super().__init__()
        self.recordings = [recordings] if isinstance(recordings, Recording) else list(recordings or [])
        if specs is None:
            if not self.recordings:
                raise DataError("recordings", "at least one Recording", "none")
            for k, rec in enumerate(self.recordings):
                if not isinstance(rec, Recording):
                    raise DataError(f"recordings[{k}]", "a probtwin.Recording", type(rec).__name__)
                if not self._frame_padding and rec.padded:
                    counts = rec.frame_counts
                    raise DataError(
                        f"responses of {rec.name!r}",
                        f"trials of equal length ({type(self).__name__} does not read NaN-padded trials)",
                        f"trials of {counts.min()} to {counts.max()} frames",
                    )
            names = [r.name for r in self.recordings]
            if len(set(names)) != len(names):
                raise DataError("recordings", "sessions with distinct names", f"{names}")
            specs = [SessionSpec.of(r) for r in self.recordings]
        self.specs = specs
        self.likelihood_name = likelihood
        self.config = dict(config)
        self.noise: list[NoiseModel] = nn.ModuleList(
            make_noise(
                self.config.get("noise", "independent"),
                likelihood,
                s.n_neurons,
                self.config.get("latent_rank", 0),
                s.n_behavior,
                self.config.get("dequantize", False),
                **self._noise_options(),
            )
            for s in specs
        )
        self.history: History | None = None
        self.members, self.member_histories = [], []  # the whole-twin posterior's (probtwin.twins.posterior)
        self._register_sessions(specs)
        if self.recordings:
            self._standardize()

    def _noise_options(self) -> dict:
        """More settings of :func:`~probtwin.twins.noise.make_noise` a twin passes (none here)."""
        return {}

    def _standardize(self) -> None:
        """Record each session's statistics over its train tier and check its responses."""
        for k, rec in enumerate(self.recordings):
            train = rec.split("train")
            stats = response_stats(train.responses)
            self.noise[k].initialize(stats, f"responses of {rec.name!r}")
            self._standardize_inputs(k, train, stats)

    # ------------------------------------------------------------------ inference

    def loss_terms(self, step: list[dict]):
        """The ELBO's terms of a step: the sum of its sessions' minibatch estimates."""
        terms = [self.batch_terms(batch) for batch in step]
        return sum(terms[1:], terms[0])

    def batch_terms(self, batch: dict):
        """The ELBO's terms on one session's batch; the guide and the model share what they
        compute from it (the core's features) within this one evaluation only."""
        return elbo_terms(self.model, self.guide, {k: v for k, v in batch.items() if k != "features"})

    #: Whether the twin reads trials of unequal length (NaN-padded, :mod:`probtwin.data.padding`).
    _frame_padding = False

    #: ``fit``'s defaults where an argument is None (a twin's data set its scale: the motor twin's
    #: sessions hold tens of trials, the image twins' thousands).
    fit_defaults: dict = {"max_epochs": 100, "batch_size": 64, "patience": 10}

    def fit(
        self,
        max_epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress: bool = True,
        patience: int | None = None,
        checkpoint: str | Path | None = None,
        clip_norm: float = 10.0,
        lr_decay: float = 0.3,
        max_lr_decays: int = 3,
        time_limit: float | None = None,
    ) -> History:
        """Fit the twin by stochastic variational inference on the train tiers.

        Adam with gradient clipping; when the twin's validation score (the image twins: the
        validation correlation of the posterior-mean prediction; the motor twin: the local ELBO
        per observed value, or the R^2 of its decode with ``validation="behavior"``) has not
        improved for
        ``patience`` epochs, the best state is restored and the learning rate multiplied by
        ``lr_decay``, at most ``max_lr_decays`` times before the fit stops; the best state is
        kept. ``batch_size`` is the trials of each session in a step (a twin of several sessions
        takes a batch of every session in each step). With ``checkpoint``, the state is written
        after every epoch, and a fit started with
        an existing checkpoint resumes from it. ``time_limit`` (seconds) starts no epoch after that
        much fitting time. ``max_epochs``, ``batch_size`` and ``patience`` left None take the
        twin's :attr:`fit_defaults` (100, 64 and 10; the motor twin 400, 16 and 25); ``lr`` left
        None is 0.005 (the gaze twin of scenes per frame: 0.01).

        A twin whose ``posterior`` is ``"ensemble"`` or ``"bootstrap"`` fits each of its members so, one after
        another, sharing ``time_limit``; ``"swag"`` collects the trajectory of a further few
        epochs (:mod:`probtwin.twins.posterior`). The returned history is the first member's.

        Returns
        -------
        History
            Per epoch: ``elbo``, ``log_likelihood`` (expected, full-data scale), ``kl``,
            ``factor`` (prior terms of point estimates), ``validation``, ``lr``, ``seconds``.
        """
        if not self.recordings:
            raise DataError("recordings", "the data to fit (a loaded twin has none; build a new one)", "none")
        given = {"max_epochs": max_epochs, "batch_size": batch_size, "patience": patience}
        max_epochs, batch_size, patience = (self.fit_defaults[k] if v is None else v for k, v in given.items())
        lr = self.fit_defaults.get("lr", 5e-3) if lr is None else lr
        dev = resolve_device(device)
        self.to(dev)
        self._batch_size, self._seed = int(batch_size), int(seed)
        config = FitConfig(
            max_epochs=max_epochs,
            lr=lr,
            clip_norm=clip_norm,
            patience=patience,
            lr_decay=lr_decay,
            max_lr_decays=max_lr_decays,
            seed=seed,
            progress=progress,
            checkpoint=None if checkpoint is None else str(checkpoint),
            time_limit=time_limit,
        )
        self._before_fit()
        self.history = fit_posterior(self, config, dev)
        return self.history

    def _before_fit(self) -> None:
        """What a twin resets before a fit (nothing here)."""
