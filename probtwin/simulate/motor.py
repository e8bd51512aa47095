"""A ground-truth sensorimotor circuit: latent dynamics on a known sparse graph drive a 2-D effector.

The generative story is the one :class:`probtwin.MotorGraphTwin` fits (the same
:class:`~probtwin.nn.graph.GraphDynamics`): each unit ``n`` has a latent state ``x_n(t)`` in R^d,

    x_n(t+1) = a x_n(t) + sum_{j -> n} w_jn W tanh(x_j(t)) + B_n u(t) + b_n + sigma eps,
    spikes   y_n(t) ~ Poisson(exp(c_n . x_n(t) + beta_n)),
    velocity v(t)   = sum_{n motor} D_n x_n(t) + v_0 + rho eta,

with a random directed graph (each ordered pair an edge with probability ``edge_prob``), reach
targets ``u(t)`` (one-hot, on during the first third of the trial) and a subset of *motor* units
(``motor_fraction``) read out into the hand's velocity. The truth holds every parameter, the
states, and the effect of lesioning each unit (clamping it at its mean state) on the velocity of
the test trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from probtwin import metrics
from probtwin.data.recording import Recording
from probtwin.data.splits import split_by_stimulus
from probtwin.errors import DataError
from probtwin.nn.graph import GraphDynamics, rollout

__all__ = ["MotorSimulation", "motor"]


@dataclass
class MotorSimulation:
    """A simulated motor recording and the truth behind it.

    Attributes
    ----------
    recording : Recording
        Responses (trials, frames, units) spike counts, behaviour (trials, frames, 2) velocity,
        stimuli (trials, frames, targets) the one-hot reach target.
    truth : dict of str to numpy.ndarray
        ``edge_index`` (2, E) and ``edge_weight`` (E,), ``adjacency`` (units, units) with
        ``adjacency[j, n] = w_jn``, ``states`` (trials, frames, units, d), ``rates``,
        ``velocity`` (noise-free), ``behavior_weights`` (units, 2, d), ``motor`` (units,) bool,
        ``spike_weights`` (units, d), ``spike_bias``, ``decay``, ``message_weight``,
        ``input_weight``, ``bias``, ``noise_scale``, ``behavior_noise``, ``behavior_bias``, and
        ``innovations`` (trials, frames, units, d) (the initial states, then the process noise of
        each step), and ``lesion_effect`` (units,): :meth:`lesion_effect` of each unit on the
        test trials.
    dynamics : GraphDynamics
        The true dynamics.
    config : dict
    """

    recording: Recording
    truth: dict[str, np.ndarray]
    dynamics: GraphDynamics
    config: dict = field(default_factory=dict)

    def velocity(self, trials: np.ndarray, silenced: np.ndarray | None = None) -> np.ndarray:
        """Noise-free hand velocity ([lesions,] trials, frames, 2) of recorded trials, intact or lesioned.

        The trials are rerun from their true innovations (initial states and process noise), so
        intact they reproduce ``truth["velocity"]``; ``silenced`` (lesions, units) bool: each row
        one lesion, its units clamped at their mean state over ``trials`` and frames in the
        intact circuit (see :func:`probtwin.experiments.lesion`), with the same innovations.
        """
        t = self.truth
        e = torch.as_tensor(t["innovations"][trials], dtype=torch.float32)
        u = torch.as_tensor(np.asarray(self.recording.stimuli[trials]), dtype=torch.float32)
        edges = torch.as_tensor(t["edge_index"]), torch.as_tensor(t["edge_weight"], dtype=torch.float32)
        with torch.no_grad():
            x = rollout(self.dynamics, e[..., 0, :, :], u, *edges, e)
            if silenced is not None:
                clamp = x.mean((-4, -3))  # (units, d)
                lesioned = torch.as_tensor(np.asarray(silenced, dtype=bool))[:, None, :]  # (lesions, 1, units)
                x = rollout(self.dynamics, e[..., 0, :, :], u, *edges, e, silenced=lesioned, clamp=clamp)
        d = torch.as_tensor(t["behavior_weights"], dtype=torch.float32)
        return (torch.einsum("...tnd,nkd->...tk", x, d) + torch.as_tensor(t["behavior_bias"])).numpy()

    def lesion_effect(
        self, nodes: np.ndarray | None = None, trials: np.ndarray | None = None, statistic: str = "rms"
    ) -> np.ndarray:
        """True effect of lesioning each unit in ``nodes`` on the velocity of ``trials`` (default:
        the test tier), (len(nodes),), by :func:`probtwin.metrics.behavior_effect`."""
        n = self.truth["spike_bias"].shape[0]
        nodes = np.arange(n) if nodes is None else np.asarray(nodes)
        trials = np.flatnonzero(self.recording.tiers == "test") if trials is None else np.asarray(trials)
        silenced = np.zeros((len(nodes), n), dtype=bool)
        silenced[np.arange(len(nodes)), nodes] = True
        return metrics.behavior_effect(self.velocity(trials), self.velocity(trials, silenced), statistic)


def motor(
    n_units: int = 40,
    n_trials: int = 400,
    frames: int = 32,
    seed: int = 0,
    latent_dim: int = 1,
    edge_prob: float = 0.08,
    weight_range: tuple[float, float] = (0.3, 0.6),
    decay: float = 0.7,
    noise_scale: float = 0.25,
    mean_rate: float = 1.0,
    motor_fraction: float = 0.3,
    behavior_noise: float = 0.1,
    n_targets: int = 4,
) -> MotorSimulation:
    """Simulate spikes and hand velocity of a circuit with a known graph.

    Parameters
    ----------
    n_units, n_trials, frames : int
        Units (graph nodes), trials and time bins per trial.
    seed : int
    latent_dim : int
        ``d``, the state dimension of each unit.
    edge_prob : float
        Probability of each ordered pair being an edge.
    weight_range : (float, float)
        Edge weights are uniform in this range of magnitudes, with random signs.
    decay : float
        ``a``.
    noise_scale : float
        ``sigma``, the process noise.
    mean_rate : float
        Typical spikes per bin (``exp(beta_n)``).
    motor_fraction : float
        Fraction of units read out into the velocity.
    behavior_noise : float
        ``rho``.
    n_targets : int
        Reach targets (inputs).

    Returns
    -------
    MotorSimulation
    """
    for name, value, low in (("n_units", n_units, 3), ("n_trials", n_trials, 10), ("frames", frames, 2)):
        if int(value) != value or value < low:
            raise DataError(name, f"an integer >= {low}", repr(value))
    if not 0 < edge_prob < 1:
        raise DataError("edge_prob", "a probability in (0, 1)", repr(edge_prob))
    if not 0 < motor_fraction <= 1:
        raise DataError("motor_fraction", "a fraction in (0, 1]", repr(motor_fraction))
    rng = np.random.default_rng(seed)
    torch_gen = torch.Generator().manual_seed(int(seed))
    n, d = int(n_units), int(latent_dim)

    adjacency = (rng.random((n, n)) < edge_prob) & ~np.eye(n, dtype=bool)
    source, target = np.nonzero(adjacency)
    weight = rng.uniform(*weight_range, len(source)) * rng.choice([-1.0, 1.0], len(source))
    dynamics = GraphDynamics(n, d, n_targets, decay=decay)
    with torch.no_grad():
        dynamics.bias.copy_(torch.as_tensor(rng.normal(0, 0.2, (n, d)), dtype=torch.float32))
        dynamics.input_weight.copy_(torch.as_tensor(rng.normal(0, 0.4, (n, d, n_targets)), dtype=torch.float32))
        dynamics.messages.lin.weight.copy_(torch.eye(d))
    edge_index = np.stack([source, target]).astype(np.int64)

    target_of_trial = rng.integers(n_targets, size=n_trials)
    inputs = np.zeros((n_trials, frames, n_targets), np.float32)
    on = max(1, frames // 3)
    inputs[np.arange(n_trials)[:, None], np.arange(on)[None], target_of_trial[:, None]] = 1.0
    x0 = torch.as_tensor(rng.normal(0, 0.5, (n_trials, n, d)), dtype=torch.float32)
    noise = noise_scale * torch.randn(n_trials, frames, n, d, generator=torch_gen)
    noise[:, 0] = x0  # the innovations: initial states, then process noise
    with torch.no_grad():
        states = rollout(
            dynamics,
            x0,
            torch.as_tensor(inputs),
            torch.as_tensor(edge_index),
            torch.as_tensor(weight, dtype=torch.float32),
            noise,
        ).numpy()

    spike_weights = rng.uniform(0.4, 0.8, (n, d)) / np.sqrt(d)
    spike_bias = np.log(mean_rate) + rng.normal(0, 0.3, n)
    log_rates = np.clip(np.einsum("btnd,nd->btn", states, spike_weights) + spike_bias, None, 4.0)
    rates = np.exp(log_rates)
    spikes = rng.poisson(rates)

    is_motor = np.zeros(n, dtype=bool)
    is_motor[rng.choice(n, max(1, int(round(motor_fraction * n))), replace=False)] = True
    behavior_weights = np.where(is_motor[:, None, None], rng.normal(0, 1.0, (n, 2, d)), 0.0)
    behavior_bias = np.zeros(2)
    velocity = np.einsum("btnd,nkd->btk", states, behavior_weights) + behavior_bias
    observed_velocity = velocity + behavior_noise * rng.standard_normal(velocity.shape)

    tiers = split_by_stimulus(np.arange(n_trials), seed=seed)
    coords = rng.uniform(0.0, 1.0, (n, 2))  # positions on the array (mm), for distance graphs
    recording = Recording(
        inputs,
        spikes,
        behavior=observed_velocity,
        tiers=tiers,
        neuron_coords=coords,
        trial_info={"target": target_of_trial},
        name=f"motor_sim_{seed}",
    )
    truth = {
        "edge_index": edge_index,
        "edge_weight": weight,
        "adjacency": _dense(edge_index, weight, n),
        "states": states,
        "rates": rates,
        "velocity": velocity,
        "behavior_weights": behavior_weights,
        "behavior_bias": behavior_bias,
        "motor": is_motor,
        "spike_weights": spike_weights,
        "spike_bias": spike_bias,
        "decay": np.full(d, decay),
        "message_weight": np.eye(d),
        "input_weight": dynamics.input_weight.detach().numpy().copy(),
        "bias": dynamics.bias.detach().numpy().copy(),
        "noise_scale": np.asarray(noise_scale),
        "innovations": noise.numpy(),
        "behavior_noise": np.asarray(behavior_noise),
    }
    config = dict(
        n_units=n_units,
        n_trials=n_trials,
        frames=frames,
        seed=seed,
        latent_dim=latent_dim,
        edge_prob=edge_prob,
        weight_range=weight_range,
        decay=decay,
        noise_scale=noise_scale,
        mean_rate=mean_rate,
        motor_fraction=motor_fraction,
        behavior_noise=behavior_noise,
        n_targets=n_targets,
    )
    sim = MotorSimulation(recording, truth, dynamics, config)
    truth["lesion_effect"] = sim.lesion_effect()
    return sim


def _dense(edge_index: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, n))
    out[edge_index[0], edge_index[1]] = weight
    return out
