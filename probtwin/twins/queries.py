"""Posterior queries of a stimulus-response twin, run through its model by the query engine.

``predict`` (posterior draws of the mean response, or of some neurons given others), ``sample``
(synthetic populations, noise included) and the posterior-mean prediction behind the validation
score: each runs the twin's model under Pyro's handlers (:mod:`probtwin.infer.query`) in chunks
of trials that keep the working set bounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probtwin import metrics
from probtwin.data.padding import frame_mask
from probtwin.data.recording import Recording
from probtwin.infer import query as q
from probtwin.infer import seeded
from probtwin.twins.prediction import Prediction

__all__ = ["PosteriorQueries"]

_MAX_ELEMENTS = 2**25  # working-set bound of a prediction chunk (floats)


class PosteriorQueries:
    """Mixin of the stimulus-response twins (responses (trials, neurons) to stimuli). The twin
    gives ``model`` and ``guide``; its model observes ``responses_<session>``, whose
    distribution has a ``loc``, in the plate ``trials_<session>``.
    """

    def validation_score(self) -> float:
        """Mean over sessions of the validation correlation of the posterior-mean prediction."""
        scores = []
        for k, rec in enumerate(self.recordings):
            tier = "validation" if np.any(rec.tiers == "validation") else "train"
            part = rec.split(tier)
            mean = self._predict_mean(part, k)
            scores.append(np.nanmean(metrics.single_trial_correlation(np.asarray(part.responses), mean)))
        return float(np.mean(scores))

    def query(self) -> q.Query:
        """The twin as the query engine sees it: its model and guide, one plate over trials per
        session (:mod:`probtwin.infer.query`)."""
        names = {f"trials_{k}" for k in range(len(self.specs))}
        return q.Query(self.model, self.guide, 1, names, self._components(), self._combination())

    def _elements_per_neuron(self, k: int) -> int:
        """Working-set floats per neuron, trial and draw of the model's location (for chunking)."""
        return 1

    @torch.no_grad()
    def intervene(
        self,
        x: Recording | np.ndarray,
        do: dict[str, Any],
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        behavior: np.ndarray | None = None,
        gaze: np.ndarray | None = None,
    ) -> tuple[Prediction, Prediction]:
        """Posterior draws of the mean response, intact and with model sites set (``poutine.do``).

        Both share the same posterior draws, so that their difference is each draw's causal
        effect of the intervention.

        Parameters
        ----------
        x : Recording or numpy.ndarray
            As in :meth:`predict`.
        do : dict
            Site name in the model (e.g. ``"weights_0"``: session 0's feature weights, (neurons,
            channels)) to the value it is set to in every posterior draw (broadcast against one
            draw of the site).

        Returns
        -------
        intact, intervened : Prediction
            Samples (num_samples, trials, neurons), or (num_samples, trials, frames, neurons)
            for movies.
        """
        k, stimuli, behavior, gaze = self._inputs(x, session, behavior, gaze)
        values = {
            name: torch.as_tensor(np.asarray(v), dtype=torch.float32, device=self.device) for name, v in do.items()
        }
        # two runs' results a chunk: chunks half as large
        chunks = ((sl, *args) for sl, _, args in self._chunk_args(k, (stimuli, behavior, gaze), 2 * num_samples))
        frames = (stimuli.shape[2],) if len(self.specs[k].stimulus_shape) == 4 else ()  # a movie's: per frame
        out = np.empty((2, num_samples, len(stimuli), *frames, self.specs[k].n_neurons), dtype=np.float32)
        self.train(False)
        with seeded(seed, self.device):
            for sl, intact, forced in q.interventions(self.query(), chunks, f"responses_{k}", num_samples, values):
                out[0, :, sl], out[1, :, sl] = intact.cpu().numpy(), forced.cpu().numpy()
        ids = np.asarray(self.specs[k].neuron_ids)
        return Prediction(_blank_padding(x, out[0]), ids), Prediction(_blank_padding(x, out[1]), ids)

    def _chunk_args(self, k: int, inputs: tuple, draws: int, extra=None):
        """Chunks of trials sized so that the working set under ``draws`` posterior draws stays
        under ``_MAX_ELEMENTS`` floats: (slice, batch, the engine's ``(args, *extra(slice, batch))``)."""
        shape = getattr(inputs[0], "shape", ())
        frames = shape[2] if len(shape) == 5 else 1  # a video's trial holds a population response per frame
        per_neuron = self._elements_per_neuron(k) + self.noise[k].elements
        per_trial = draws * frames * self.specs[k].n_neurons * per_neuron
        for sl, batch in self._chunks(k, *inputs, max(1, _MAX_ELEMENTS // max(1, per_trial))):
            yield sl, batch, ((batch,), *(extra(sl, batch) if extra is not None else ()))

    def _run(self, k: int, stimuli, behavior, gaze, num_samples: int, readers: dict, draws=None, extra=None):
        """The query engine over chunks of trials: yields (slice, batch, each reader's result);
        ``draws``: the global sites' draws (:meth:`_posterior_draws`), else drawn in the first chunk;
        ``extra(slice, batch)``: what the readers take besides the trace."""
        chunks = (
            ((sl, batch), *args)
            for sl, batch, args in self._chunk_args(k, (stimuli, behavior, gaze), num_samples, extra)
        )
        self.train(False)
        for (sl, batch), out in q.run(self.query(), chunks, num_samples, readers, global_draws=draws):
            yield sl, batch, out
            out.clear()  # the chunk's results are consumed: free them before the next chunk

    def _posterior_draws(self, k: int, num_samples: int | None, seed: int = 0):
        """Draws of session ``k``'s global sites from the guide, to share between queries (a
        trace of :func:`probtwin.infer.query.posterior_draws`, a ``MixtureDraws`` for a
        whole-twin posterior); ``None``: one draw at the posterior means (one per member)."""
        shape = self.specs[k].stimulus_shape
        probe = (self._batch(k, {"stimuli": np.zeros((1, *shape), np.float32)}),)  # the guide's arguments
        with torch.no_grad(), seeded(seed, self.device):
            return q.posterior_draws(self.query(), probe, num_samples)

    @torch.no_grad()
    def _predict_mean(self, x: Recording | np.ndarray, session: Any = None) -> np.ndarray:
        """Mean response under the posterior mean of the per-neuron parameters, (trials, neurons)
        (averaged over the members of a whole-twin posterior)."""
        k, stimuli, behavior, gaze = self._inputs(x, session)
        point = self._posterior_draws(k, None)
        return self._gather(k, (stimuli, behavior, gaze), 1, 0, q.mean(f"responses_{k}"), draws=point).mean(0)

    def _observation_read(self, batch: dict, draws, reader) -> torch.Tensor:
        """An engine ``reader`` of the observation site (its value unsampled) in the model's trace
        on one batch under global ``draws`` (a trace of :meth:`_posterior_draws`; per-trial
        latents from the prior); a whole-twin posterior's members joined along the draws."""
        chunks = [(None, (batch,))]
        return next(q.run(self.query(), chunks, None, {"x": reader}, local="prior", global_draws=draws))[1]["x"]

    def _point_location(self, k: int, batch: dict, point) -> torch.Tensor:
        """The observation's location (chunk, neurons) at the posterior means ``point`` (averaged
        over a whole-twin posterior's members), read off the model's trace."""
        fn = q.distribution(f"responses_{k}")

        def loc(trace, extra) -> torch.Tensor:
            return fn(trace, extra).loc

        loc.site, loc.needs_value = fn.site, False
        return self._observation_read(batch, point, loc).mean(0)

    def _mean_of_images(self, k: int, images: torch.Tensor, draws, behavior: np.ndarray | None = None):
        """Mean responses (draws, n, neurons) to raw images (n, C, H, W) under ``draws`` (a trace
        of :meth:`_posterior_draws`), differentiable in the images (gradients, most exciting
        inputs); ``behavior`` one row (1, B) or None."""
        self.train(False)
        arrays = {"stimuli": images}
        if behavior is not None:
            arrays["behavior"] = self._condition("behavior", behavior, len(images))
        return self._observation_read(self._batch(k, arrays), draws, q.mean(f"responses_{k}"))

    @torch.no_grad()
    def predict(
        self,
        x: Recording | np.ndarray,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        given: tuple[np.ndarray, np.ndarray] | None = None,
        behavior: np.ndarray | None = None,
        gaze: np.ndarray | None = None,
    ) -> Prediction:
        """Posterior draws of the mean response to stimuli.

        Parameters
        ----------
        x : Recording or numpy.ndarray
            A recording (its stimuli, behaviour and gaze are used) or stimuli
            (n, channels, height, width) shown at the average behaviour and gaze.
        num_samples : int
            Posterior draws, taken together (vectorised) and in chunks of stimuli so that the
            working memory stays bounded.
        seed : int
            The same seed on the same device gives the same numbers, also after saving and
            loading (the draws come from the device's generator).
        session : int or str, optional
            Which session's neurons (needed when the twin has several and ``x`` is not one of
            its recordings).
        given : (neuron_index, responses), optional
            Observed responses (n, len(neuron_index)) of some neurons on the same trials (a
            video twin: (n, frames, len(neuron_index))): the prediction is then of the *other*
            neurons, conditioned on these through the shared latent state (Gaussian conditioning
            in a flow's Gaussian space, a Laplace approximation for counts). A twin with
            independent noise predicts as without.
        behavior, gaze : numpy.ndarray, shape (n, d) or (1, d), optional
            The state the stimuli are shown in when ``x`` is an array (raw units, as in the
            recording; one row is broadcast over the stimuli). Default: the average state.

        Returns
        -------
        Prediction
            ``.samples`` (num_samples, trials, neurons), ``.mean``, ``.quantile(q)``; with
            ``given``, of the other neurons only (``.neuron_ids`` says which).
        """
        k, stimuli, behavior, gaze = self._inputs(x, session, behavior, gaze)
        ids = np.asarray(self.specs[k].neuron_ids)
        site = f"responses_{k}"
        if given is None:
            means = self._gather(k, (stimuli, behavior, gaze), num_samples, seed, q.mean(site))
            return Prediction(_blank_padding(x, means), ids)
        index, observed = self._given(k, given, len(stimuli), self._response_frames(k, stimuli, gaze))
        mask = torch.zeros(len(ids), dtype=torch.bool, device=self.device)
        mask[torch.as_tensor(index, device=self.device)] = True
        others = np.flatnonzero(~mask.cpu().numpy())

        def values(sl: slice, _batch: dict) -> tuple:
            y = torch.zeros(sl.stop - sl.start, *observed.shape[1:-1], len(ids), device=self.device)
            y[..., torch.as_tensor(index, device=self.device)] = self._tensor(observed[sl])
            return mask, y

        reader = q.conditional_mean(site)
        out = self._gather(k, (stimuli, behavior, gaze), num_samples, seed, reader, extra=values, select=others)
        return Prediction(out, ids[others])

    def _response_frames(self, k: int, stimuli: np.ndarray, gaze: np.ndarray | None) -> int | None:
        """Frames of each trial's responses to these inputs (None: one response per trial):
        videos (n, channels, frames, height, width) have their frames."""
        return stimuli.shape[2] if len(self.specs[k].stimulus_shape) == 4 else None

    def _gather(self, k: int, inputs: tuple, num_samples: int, seed: int, reader, extra=None, select=None, draws=None):
        """One reader's draws over all trials, (num_samples, trials, ...) float32, filled chunk by
        chunk (``select``: the neurons kept, last axis; ``draws``: as in :meth:`_run`)."""
        chunks = ((sl, *args) for sl, _, args in self._chunk_args(k, inputs, num_samples, extra))
        keep = None if select is None else torch.as_tensor(select, device=self.device)
        self.train(False)
        with seeded(seed, self.device):
            return q.collect(self.query(), chunks, num_samples, reader, len(inputs[0]), keep, global_draws=draws)

    @torch.no_grad()
    def sample(
        self,
        x: Recording | np.ndarray,
        num_samples: int = 100,
        seed: int = 0,
        session: Any = None,
        behavior: np.ndarray | None = None,
        gaze: np.ndarray | None = None,
    ) -> np.ndarray:
        """Posterior predictive responses, observation noise included, (num_samples, trials, neurons).

        Each draw takes a posterior draw of the parameters and then a whole population's response
        per trial: with a latent state, correlated across neurons. ``behavior`` and ``gaze`` as
        in :meth:`predict`.
        """
        k, stimuli, behavior, gaze = self._inputs(x, session, behavior, gaze)
        draws = self._gather(k, (stimuli, behavior, gaze), num_samples, seed, q.draw(f"responses_{k}"))
        return _blank_padding(x, draws)


def _blank_padding(x: Any, values: np.ndarray) -> np.ndarray:
    """NaN where a trial of a NaN-padded recording ``x`` has no frame: ``values`` (draws,
    trials, frames, neurons), in place."""
    if isinstance(x, Recording) and x.padded:
        values[:, ~frame_mask(x.frame_counts, x.n_frames)] = np.nan
    return values
