"""Latent dynamics on a graph of units: torch_geometric message passing, batched over trials.

Each node ``n`` (a unit) carries a latent state ``x_n`` in R^d. One step of the dynamics is

    x_n(t+1) = a * x_n(t) + sum_{e = (j -> n)} w_e g(r_e) W tanh(x_j(t)) + B_n u(t) + b_n

with ``a`` in (0, 1)^d a per-dimension decay, ``w_e`` a scalar weight per edge, ``g(r_e)`` an
optional gate in (0, 1) computed from edge attributes ``r_e`` (e.g. distance), ``W`` (d x d) shared
with its Frobenius norm fixed at sqrt(d) (so that the scale of an edge lives in ``w_e`` alone),
``B_n`` (d x inputs) each node's input weights (inputs such as the reach target) and ``b_n`` a bias.
The sum over edges is a :class:`torch_geometric.nn.MessagePassing` aggregation over the sparse
``edge_index`` (2, E): its cost is O(E), and states with any leading dimensions (posterior draws,
trials, frames) share one graph, so many trials are one call (``node_dim=-2``).

Graphs: :func:`complete_graph` (all ordered pairs, for a learned graph), :func:`knn_graph` (k
nearest neighbours of unit coordinates) or an ``edge_index`` given by the user
(:func:`check_edge_index`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from probtwin.errors import DataError
from probtwin.nn.mlp import mlp

__all__ = ["EdgeMessages", "GraphDynamics", "check_edge_index", "complete_graph", "knn_graph", "rollout"]


def complete_graph(n_nodes: int) -> torch.Tensor:
    """Every ordered pair ``j -> n``, ``j != n``: edge_index (2, n (n - 1)), rows (source, target)."""
    source, target = torch.meshgrid(torch.arange(n_nodes), torch.arange(n_nodes), indexing="ij")
    keep = source != target
    return torch.stack([source[keep], target[keep]])


def knn_graph(coords: np.ndarray | torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Edges from each node's ``k`` nearest neighbours to it: edge_index (2, n k).

    Distances are computed ``chunk`` target nodes at a time, so memory stays O(chunk x n).

    Parameters
    ----------
    coords : array, shape (nodes, dims)
        Unit positions (e.g. electrode or cortical coordinates).
    k : int
        Neighbours per node, ``1 <= k < nodes``.
    """
    x = torch.as_tensor(np.asarray(coords, dtype=np.float32))
    if x.ndim != 2 or not torch.isfinite(x).all():
        raise DataError("neuron_coords", "finite coordinates of shape (units, dims)", f"shape {tuple(x.shape)}")
    n = len(x)
    if int(k) != k or not 1 <= k < n:
        raise DataError("k", f"an integer in [1, {n - 1}]", repr(k))
    sources = []
    for start in range(0, n, chunk):
        d = torch.cdist(x[start : start + chunk], x)
        rows = torch.arange(start, min(start + chunk, n))
        d[rows - start, rows] = torch.inf  # no self-loops
        sources.append(d.topk(int(k), largest=False).indices)
    source = torch.cat(sources)
    target = torch.arange(n).repeat_interleave(int(k))
    return torch.stack([source.reshape(-1), target])


def check_edge_index(edge_index: np.ndarray | torch.Tensor, n_nodes: int) -> torch.Tensor:
    """An edge list (2, E) of distinct ``source -> target`` pairs of nodes in [0, n_nodes), no self-loops."""
    e = torch.as_tensor(np.asarray(edge_index))
    if e.ndim != 2 or e.shape[0] != 2 or e.shape[1] == 0 or e.dtype.is_floating_point or e.dtype == torch.bool:
        raise DataError("edge_index", "integer array of shape (2, edges)", f"{e.dtype} array of shape {tuple(e.shape)}")
    e = e.long()
    if e.min() < 0 or e.max() >= n_nodes:
        raise DataError("edge_index", f"node indices in [0, {n_nodes})", f"range [{int(e.min())}, {int(e.max())}]")
    if (e[0] == e[1]).any():
        raise DataError("edge_index", "no self-loops (a node's own past is the decay term)", "source == target")
    if len(torch.unique(e[0] * n_nodes + e[1])) != e.shape[1]:
        raise DataError("edge_index", "distinct edges", "repeated (source, target) pairs")
    return e


class EdgeMessages(MessagePassing):
    """Edge-conditioned messages ``w_e g(r_e) W tanh(x_j)`` summed at each target node (``W`` of
    norm sqrt(d): see :attr:`weight`).

    Parameters
    ----------
    latent_dim : int
        ``d``.
    edge_dim : int
        Features per edge ``r_e`` (0: no gate).
    hidden : int
        Width of the gate's hidden layer.

    Shapes
    ------
    x (..., nodes, d), edge_index (2, E), edge_weight (..., E) broadcastable against the leading
    dimensions of ``x`` without its node axis, edge_attr (E, edge_dim) -> (..., nodes, d)
    """

    def __init__(self, latent_dim: int, edge_dim: int = 0, hidden: int = 16) -> None:
        super().__init__(aggr="add", node_dim=-2)
        self.lin = nn.Linear(latent_dim, latent_dim, bias=False)
        nn.init.eye_(self.lin.weight)
        self.gate = mlp(edge_dim, hidden, 2, 1) if edge_dim else None

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        edge_attr: torch.Tensor | None = None,
    ) -> torch.Tensor:
        weight = edge_weight
        if self.gate is not None:
            if edge_attr is None:
                raise DataError("edge_attr", "edge features (the messages are gated by them)", "None")
            weight = weight * torch.sigmoid(self.gate(edge_attr)).squeeze(-1)
        h = torch.tanh(x) @ self.weight.T
        return self.propagate(edge_index, h=h, weight=weight, size=(x.shape[-2], x.shape[-2]))

    @property
    def weight(self) -> torch.Tensor:
        """``W``, (d, d), of Frobenius norm sqrt(d) (the identity's)."""
        v = self.lin.weight
        return v * (v.shape[0] ** 0.5 / v.norm().clamp_min(1e-12))

    def message(self, h_j: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight.unsqueeze(-1) * h_j


class GraphDynamics(nn.Module):
    """The mean of one step, ``f(x(t), u(t))``, for all nodes of one graph.

    Parameters
    ----------
    n_nodes, latent_dim, n_inputs, edge_dim : int
    decay : float
        Starting value of ``a``.

    Shapes
    ------
    x (..., nodes, d), u (..., n_inputs) or None, edge_weight (..., E) -> (..., nodes, d)
    """

    def __init__(self, n_nodes: int, latent_dim: int, n_inputs: int = 0, edge_dim: int = 0, decay: float = 0.8):
        super().__init__()
        self.messages = EdgeMessages(latent_dim, edge_dim)
        self.raw_decay = nn.Parameter(torch.full((latent_dim,), float(np.log(decay / (1 - decay)))))
        self.bias = nn.Parameter(torch.zeros(n_nodes, latent_dim))
        self.input_weight = nn.Parameter(0.1 * torch.randn(n_nodes, latent_dim, n_inputs)) if n_inputs else None

    @property
    def decay(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_decay)

    def forward(
        self,
        x: torch.Tensor,
        u: torch.Tensor | None,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        edge_attr: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.decay * x + self.messages(x, edge_index, edge_weight, edge_attr) + self.bias
        if self.input_weight is not None and u is not None:
            out = out + torch.einsum("...u,ndu->...nd", u, self.input_weight)
        return out


def rollout(
    dynamics: GraphDynamics,
    x0: torch.Tensor,
    inputs: torch.Tensor | None,
    edge_index: torch.Tensor,
    edge_weight: torch.Tensor,
    noise: torch.Tensor,
    edge_attr: torch.Tensor | None = None,
    silenced: torch.Tensor | None = None,
    drive: torch.Tensor | None = None,
    clamp: torch.Tensor | None = None,
) -> torch.Tensor:
    """States of whole trials: ``x(t+1) = f(x(t), u(t)) + noise(t+1)``, with interventions.

    Parameters
    ----------
    x0 : tensor (..., nodes, d)
        Initial states.
    inputs : tensor (..., frames, n_inputs) or None
    noise : tensor (..., frames, nodes, d)
        Process noise of each step (scaled; ``noise[..., 0, :, :]`` is not used).
    silenced : bool tensor (..., nodes), optional
        Nodes clamped at every frame (a lesion): held at ``clamp`` (default 0), they carry no
        signal and send a constant message.
    drive : tensor (..., frames, nodes, d), optional
        Added to the states at every frame (a stimulation).
    clamp : tensor (..., nodes, d), optional
        The value silenced nodes are held at.

    Returns
    -------
    tensor (..., frames, nodes, d)
    """
    frames = noise.shape[-3]
    keep = None if silenced is None else (~silenced).unsqueeze(-1).to(x0.dtype)

    def intervene(x: torch.Tensor, t: int) -> torch.Tensor:
        if drive is not None:
            x = x + drive[..., t, :, :]
        if keep is None:
            return x
        return x * keep if clamp is None else x * keep + clamp * (1 - keep)

    states = [intervene(x0 + torch.zeros_like(noise[..., 0, :, :]), 0)]
    for t in range(frames - 1):  # a loop over frames: each step needs the last
        u = None if inputs is None else inputs[..., t, :]
        x = dynamics(states[-1], u, edge_index, edge_weight, edge_attr) + noise[..., t + 1, :, :]
        states.append(intervene(x, t + 1))
    return torch.stack(torch.broadcast_tensors(*states), dim=-3)  # interventions may add leading dims
