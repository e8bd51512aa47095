"""The posterior over the whole twin: core, shifter, modulator, position prior and readout.

A twin's guide is Bayesian over each neuron's readout; its other parameters (the core and the
rest) are point estimates that the guide is conditioned on. The whole-twin posterior is a
mixture over sets of those parameters, each with its own readout posterior:

    q(theta, z) = (1/K) sum_m delta(theta - theta_m) q_m(z)

``theta`` every point-estimated parameter, ``z`` the readout's latent variables. A query's draws
are stratified over the K members (the query engine's mixture components,
:attr:`probtwin.infer.query.Query.components`): the model is the same, run under each member's
parameters (``torch.func.functional_call``), so every query (predict, sample, experiments,
hypothesis tests, ArviZ) carries the whole posterior without knowing of it. Where the members
come from:

``"readout"``
    One member: the fitted twin (only the readout is uncertain).
``"ensemble"``
    A deep ensemble (Lakshminarayanan et al. 2017): K fits from independent initial parameters
    (seeds ``seed + m``) and minibatch orders, each member with its readout posterior.
``"bootstrap"``
    A bagged posterior (BayesBag; Huggins and Miller 2023): as the ensemble, but member m fits a
    resample of the training trials drawn with replacement (seed ``seed + m``). Each member's
    spread is a posterior's; the members' spread is the data's sampling variability, which a
    posterior of a misspecified model leaves out.
``"swag"``
    SWAG (Maddox et al. 2019): after the fit, ``swag_epochs`` more epochs at the last learning
    rate, the parameters' running mean and diagonal variance and the last ``swag_rank`` deviations
    collected once an epoch; K members drawn from ``Normal(mean, diag/2 + D D^T / (2 (R - 1)))``
    over the point estimates, the readout's variational parameters at their running mean.

How the members' draws of a mean response combine (``combination``,
:mod:`probtwin.infer.mixture`): the members of an ensemble or a bagged posterior are K
independent fits, and a mixture of K = 3 fits puts its 90% interval within their range, so
that the truth, one more "fit" as far from them as they are from each other, falls outside
often. ``"student"`` (their default) takes the truth as exchangeable with the fits: between
them, a Student-t with K - 1 degrees of freedom on their sample spread, ``sqrt(1 + 1/K)``
wider; within each, its readout posterior. SWAG's members are draws of one posterior:
``"mixture"``. The combination applies to quantities of the parameters (predict, intervene,
experiments, tests, positions); ``sample`` and the log densities behind ``evaluate`` stay the
members' mixture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from probtwin.errors import DataError
from probtwin.infer import FitConfig, History, run_fit, seeded
from probtwin.infer.mixture import COMBINATIONS, combine_blocks, member_weights, stratified_counts

__all__ = [
    "DEFAULT_MEMBERS",
    "member_quantile",
    "resolve_combination",
    "POSTERIORS",
    "normal_mixture_quantile",
    "WholeTwinPosterior",
    "fit_posterior",
    "resolve_posterior",
]

POSTERIORS = ("readout", "ensemble", "bootstrap", "swag")
"""The whole-twin posteriors a twin's ``posterior`` setting names."""


DEFAULT_MEMBERS = {"readout": 1, "ensemble": 3, "bootstrap": 3, "swag": 10}
"""Each posterior's members when none are asked for."""


def resolve_posterior(posterior: str, members: int | None) -> int:
    """The member count of a posterior (``None``: its default); refuses an unknown posterior or
    a count that does not fit it."""
    if posterior not in POSTERIORS:
        raise DataError("posterior", f"one of {POSTERIORS}", repr(posterior))
    if members is None:
        return DEFAULT_MEMBERS[posterior]
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise DataError("members", "an int of at least 1", repr(members))
    if posterior == "readout" and members != 1:
        raise DataError("members", "1 (or None) for posterior 'readout'", repr(members))
    return members


def resolve_combination(posterior: str, members: int, combination: str | None) -> str:
    """How a posterior's members combine (``None``: ``"student"`` for the independent fits of an
    ensemble or bagged posterior of 2 or more, else ``"mixture"``)."""
    if combination is None:
        return "student" if posterior in ("ensemble", "bootstrap") and members > 1 else "mixture"
    if combination not in COMBINATIONS:
        raise DataError("combination", f"one of {COMBINATIONS} or None", repr(combination))
    if combination == "student" and members < 2:
        raise DataError("combination", "'mixture' for one member ('student' needs 2 or more)", repr(combination))
    return combination


def member_quantile(loc: torch.Tensor, scale: torch.Tensor, q: float, combination: str = "mixture") -> torch.Tensor:
    """The ``q`` quantile of a quantity whose members' posteriors are ``Normal(loc_m, scale_m)``,
    elementwise, combined as ``combination`` (:mod:`probtwin.infer.mixture`).

    ``"student"``: ``mean(loc) + sqrt(1 + 1/K) s T + e``, ``s`` the members' sample standard
    deviation, ``T ~ t_{K-1}``, ``e`` a draw of a member's ``Normal(0, scale_m)``; as a scale
    mixture of Normals over 256 equiprobable values of ``chi2_{K-1}``.

    Parameters
    ----------
    loc, scale : torch.Tensor, shape (members, ...)
    q : float in (0, 1)
    combination : {"mixture", "student"}

    Returns
    -------
    torch.Tensor, shape (...)
    """
    if combination == "mixture":
        return normal_mixture_quantile(loc, scale, q)
    k = loc.shape[0]
    chi2 = torch.as_tensor(stats.chi2.ppf((np.arange(256) + 0.5) / 256, k - 1), dtype=loc.dtype, device=loc.device)
    grand = loc.mean(0)
    between = loc.var(0) * (1 + 1 / k) * (k - 1) / chi2.reshape(-1, 1, *[1] * grand.dim())  # (256, 1, ...)
    total = (between + scale.pow(2)[None]).sqrt()  # (256, K, ...)
    return normal_mixture_quantile(grand.expand_as(total).reshape(-1, *grand.shape), total.reshape(-1, *grand.shape), q)


def normal_mixture_quantile(loc: torch.Tensor, scale: torch.Tensor, q: float, iterations: int = 60) -> torch.Tensor:
    """The ``q`` quantile of equal-weight mixtures of Normals, elementwise, by bisection.

    Parameters
    ----------
    loc, scale : torch.Tensor, shape (members, ...)
    q : float in (0, 1)

    Returns
    -------
    torch.Tensor, shape (...)
    """
    normal = torch.distributions.Normal(loc, scale)
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(q)))
    low, high = (loc + z * scale).min(0).values, (loc + z * scale).max(0).values  # brackets the quantile
    for _ in range(iterations):  # halves the bracket of every element at once
        mid = (low + high) / 2
        below = normal.cdf(mid[None]).mean(0) < q
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return (low + high) / 2


class WholeTwinPosterior:
    """Mixin of :class:`~probtwin.twins.base.Twin`: the members of its posterior and how queries
    run under them.

    Attributes
    ----------
    members : list of dict
        Each member's parameters (name to tensor, as ``named_parameters``); empty: the twin's own.
    member_histories : list of History
        Each member's fit (the ensemble), empty otherwise.
    """

    members: list[dict[str, torch.Tensor]]

    def forward(self, thunk: Any) -> Any:
        """Run ``thunk()`` (what ``torch.func.functional_call`` calls under a member's parameters)."""
        return thunk()

    def _components(self) -> list:
        """The query engine's mixture components: a member's parameters around a thunk."""
        if not self.members:
            return []
        device = self.device
        states = [{name: value.to(device) for name, value in member.items()} for member in self.members]
        return [lambda thunk, s=state: torch.func.functional_call(self, s, (thunk,)) for state in states]

    @property
    def combination(self) -> str:
        """How the members' draws of a mean response combine, ``"student"`` or ``"mixture"``
        (settable: the same fit, queried either way)."""
        return self._combination()

    @combination.setter
    def combination(self, value: str) -> None:
        members = len(self.members) or int(self.config.get("members", 1))
        self.config["combination"] = resolve_combination(self.config.get("posterior", "readout"), members, value)

    def _combination(self) -> str:
        """How the members' draws combine (``config["combination"]``, resolved; ``"mixture"``
        for fewer than 2 members)."""
        if len(self.members) < 2:
            return "mixture"
        config = self.config
        return resolve_combination(config.get("posterior", "readout"), len(self.members), config.get("combination"))

    @contextlib.contextmanager
    def statistic_draws(self, num_samples: int, seed: int = 0) -> Iterator[Callable[[Any], Any]]:
        """Draws of a statistic of mean responses, combined over the members as the statistic.

        A preferred orientation, a log ratio of gains, a selectivity index are nonlinear in the
        mean responses. Under ``combination="student"`` the engine combines the mean responses
        themselves, and a t with few degrees of freedom makes some draws' curves far from every
        member's, negative ones included, whose statistic no fit would give. Inside this block
        the twin's queries return each member's draws as drawn (the mixture); compute the
        statistic per draw, then pass its draws to the function the block yields: it combines
        them over the members as the engine combines a mean response (the statistic's true value
        exchangeable with the members' values of it). The combination is linear: combine an angle
        as a difference near 0 (as ``compare_states`` combines a change of preferred orientation),
        not as an angle that wraps. Under ``"mixture"`` (or one member) the function returns its
        input.

        Parameters
        ----------
        num_samples : int
            The draws of every query in the block (stratified over the members as the engine's).
        seed : int
            Seeds the combination's weights (apart from the queries' draws).

        Yields
        ------
        callable
            ``combine(values)``: ``values`` an array (``numpy`` or ``xarray.DataArray`` with a
            ``sample`` dimension; else the first axis) of ``num_samples`` draws of the statistic;
            returns them combined, the same type and shape.

        Examples
        --------
        >>> with twin.statistic_draws(200, seed=0) as combine:  # doctest: +SKIP
        ...     curve = experiments.tuning_curve(twin, stimuli, num_samples=200, seed=0)
        ...     selectivity = combine(experiments.orientation_selectivity(curve))
        """
        if self._combination() != "student":
            yield lambda values: values
            return
        k = len(self.members)
        counts = stratified_counts(num_samples, k)
        if min(counts) == 0:
            raise DataError("num_samples", f"at least {k} draws (one per member) to combine", repr(num_samples))
        with seeded(int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])):  # apart from the draws'
            weights = member_weights(num_samples, k)

        def combine(values: Any) -> Any:
            dim = values.dims.index("sample") if hasattr(values, "dims") else 0
            array = np.asarray(values)
            combined = combine_blocks(torch.as_tensor(array, dtype=torch.float64), counts, weights, dim).numpy()
            return values.copy(data=combined.astype(array.dtype)) if hasattr(values, "dims") else combined

        saved = self.config.get("combination")
        self.config["combination"] = "mixture"
        try:
            yield combine
        finally:
            self.config["combination"] = saved

    def _own_parameters(self) -> dict[str, torch.Tensor]:
        """A member's state: its parameters and the statistics its fit learned besides them (batch
        normalisation's running mean and variance, which a member run with another's would read
        its features wrongly)."""
        state = {name: p.detach().clone() for name, p in self.named_parameters()}
        for prefix, module in self.named_modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for name, buffer in module.named_buffers(recurse=False):
                    state[f"{prefix}.{name}"] = buffer.detach().clone()
        return state

    def _variational_parameters(self) -> set[str]:
        """Names of the guide's variational parameters (the readout posterior); SWAG keeps them at
        their running mean and perturbs the rest."""
        return set()

    def _fresh(self, seed: int) -> Any:
        """A new twin of the same settings on the same recordings, initialised from ``seed``."""
        raise DataError("posterior", "a twin that can start an ensemble member", type(self).__name__)


def _flat(tensors: Any) -> torch.Tensor:
    """Parameters as one vector (any memory layout)."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


@torch.no_grad()
def _set_flat(twin: Any, vector: torch.Tensor) -> None:
    """Copy a vector of :func:`_flat` into the twin's parameters."""
    start = 0
    for p in twin.parameters():
        p.copy_(vector[start : start + p.numel()].reshape(p.shape))
        start += p.numel()


def _member_path(checkpoint: str | None, m: int) -> str | None:
    if checkpoint is None or m == 0:
        return checkpoint
    path = Path(checkpoint)
    return str(path.with_name(f"{path.stem}.member{m}{path.suffix}"))


def fit_posterior(twin: Any, config: FitConfig, device: torch.device) -> History:
    """Fit a twin and build its whole-twin posterior (``twin.config["posterior"]``).

    ``config.time_limit`` bounds the whole: an ensemble's (or bootstrap's) members share it equally, SWAG's
    collection takes a fifth of it. Members after the first checkpoint to
    ``<checkpoint stem>.member<m><suffix>``, so that an interrupted ensemble resumes.

    Returns
    -------
    History
        The first member's fit (an ensemble's others are in ``twin.member_histories``).
    """
    posterior = twin.config.get("posterior", "readout")
    members = int(twin.config.get("members", 1))
    twin.members, twin.member_histories = [], []
    if posterior == "bootstrap" or (posterior == "ensemble" and members > 1):
        return _fit_ensemble(twin, config, device, members, resample=posterior == "bootstrap")
    if posterior == "swag":
        return _fit_swag(twin, config, device, members)
    return run_fit(twin, config, device)


def _fit_ensemble(twin: Any, config: FitConfig, device: torch.device, k: int, resample: bool) -> History:
    """K fits from seeds ``seed + m``; with ``resample``, each of a bootstrap resample of the
    training trials (the same seeds, the same resamples: a resumed fit continues the same)."""
    share = None if config.time_limit is None else config.time_limit / k
    seed = int(twin.config.get("seed", 0))
    for m in range(k):
        member = twin if m == 0 else twin._fresh(seed + m).to(device)
        member._batch_size, member._seed = twin._batch_size, config.seed + m
        member._resample_seed = config.seed + m if resample else None
        member_config = dataclasses.replace(
            config, seed=config.seed + m, time_limit=share, checkpoint=_member_path(config.checkpoint, m)
        )
        twin.member_histories.append(run_fit(member, member_config, device))
        twin.members.append(member._own_parameters())
    if share is not None and all(h.stopped.startswith("time limit") for h in twin.member_histories):
        epochs = ", ".join(str(len(h.epochs)) for h in twin.member_histories)
        warnings.warn(
            f"probtwin: each of the {k} members had time_limit / {k} = {share:.0f} s and stopped at it "
            f"({epochs} epochs), before its early stop. Members stopped short predict less well, and "
            "a state test on them can find more false discoveries (the 'Whole-twin posterior' page): "
            "give a longer time_limit (None: each member to its early stop), or posterior='readout' "
            "for one fit of the whole time",
            UserWarning,
            stacklevel=4,
        )
    return twin.member_histories[0]


def _fit_swag(twin: Any, config: FitConfig, device: torch.device, k: int) -> History:
    epochs, rank = int(twin.config.get("swag_epochs", 10)), int(twin.config.get("swag_rank", 5))
    main = config if config.time_limit is None else dataclasses.replace(config, time_limit=0.8 * config.time_limit)
    history = run_fit(twin, main, device)
    variational = twin._variational_parameters()
    moments = {"n": 0, "mean": None, "square": None, "deviations": []}

    def collect(_epoch: int) -> None:
        vector = _flat(twin.parameters())
        n = moments["n"]
        if n == 0:
            moments["mean"], moments["square"] = vector.clone(), vector.pow(2)
        else:
            moments["mean"] += (vector - moments["mean"]) / (n + 1)
            moments["square"] += (vector.pow(2) - moments["square"]) / (n + 1)
        moments["deviations"] = ([*moments["deviations"], vector - moments["mean"]])[-rank:]
        moments["n"] = n + 1

    lr = history.epochs[-1]["lr"] if history.epochs else config.lr
    swag = dataclasses.replace(
        config,
        max_epochs=epochs,
        lr=lr,
        patience=epochs + 1,
        checkpoint=None,
        progress=False,
        time_limit=None if config.time_limit is None else 0.2 * config.time_limit,
        on_epoch=collect,
        restore_best=False,
    )
    best = twin._own_parameters()
    run_fit(twin, swag, device)
    if moments["n"] < 2:  # no spread to draw from: the fitted twin alone
        twin.load_state_dict({**twin.state_dict(), **best})
        return history
    mean = moments["mean"]
    variance = (moments["square"] - mean.pow(2)).clamp_min(0.0)
    deviations = torch.stack(moments["deviations"], 1)  # (parameters, R)
    perturbed = _flat(
        torch.full(p.shape, float(name not in variational), device=p.device) for name, p in twin.named_parameters()
    )
    with seeded(config.seed + 1, mean.device):
        z1 = torch.randn(k, len(mean), device=mean.device)
        z2 = torch.randn(k, deviations.shape[1], device=mean.device)
    spread = (variance / 2).sqrt() * z1 + (z2 @ deviations.T) / math.sqrt(2 * max(deviations.shape[1] - 1, 1))
    for draw in mean + spread * perturbed:  # K members: the point estimates perturbed
        _set_flat(twin, draw)
        twin.members.append(twin._own_parameters())
    _set_flat(twin, mean)  # the twin itself at the running mean (SWA)
    return history
