"""An amortized encoder of whole trials: a bidirectional GRU per node, over the trial's frames.

Each node's sequence of inputs at frame t is its own (transformed) count, whether that count is
observed, a context vector of the whole observed population at t (a linear projection, rescaled
for the fraction observed), the task inputs u(t) and a learned node embedding. One GRU, shared by
all nodes, reads each node's sequence forwards and backwards, and a linear head gives the mean and
scale of the node's latent state at every frame. The cost is linear in the number of nodes; the
GRU's batch is trials x nodes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NodeSequenceEncoder"]


class NodeSequenceEncoder(nn.Module):
    """Per-node posterior means and scales of latent states from a trial's counts.

    Parameters
    ----------
    n_nodes, n_inputs, latent_dim : int
    hidden : int
        GRU units per direction.
    context : int
        Width of the population context.
    embedding : int
        Width of each node's embedding.

    Shapes
    ------
    counts (trials, frames, nodes), observed (trials, nodes) bool, inputs (trials, frames, n_inputs)
    or None -> loc, scale (trials, frames, nodes, latent_dim)
    """

    def __init__(
        self, n_nodes: int, n_inputs: int, latent_dim: int, hidden: int = 32, context: int = 16, embedding: int = 8
    ) -> None:
        super().__init__()
        self.context = nn.Linear(n_nodes, context)
        self.embedding = nn.Parameter(0.1 * torch.randn(n_nodes, embedding))
        self.gru = nn.GRU(2 + context + n_inputs + embedding, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(
        self, counts: torch.Tensor, observed: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, n = counts.shape
        seen = observed.to(counts.dtype)[:, None, :]  # (trials, 1, nodes)
        z = torch.log1p(counts) * seen
        fraction = seen.mean(-1, keepdim=True).clamp_min(1.0 / n)
        ctx = self.context(z / fraction)  # (trials, frames, context)
        parts = [z.unsqueeze(-1), seen.expand(b, t, n).unsqueeze(-1), ctx.unsqueeze(2).expand(b, t, n, -1)]
        if inputs is not None:
            parts.append(inputs.unsqueeze(2).expand(b, t, n, -1))
        parts.append(self.embedding.expand(b, t, n, -1))
        features = torch.cat(parts, -1).permute(0, 2, 1, 3).reshape(b * n, t, -1)
        out, _ = self.gru(features)
        head = self.head(out).reshape(b, n, t, 2, self.latent_dim).permute(3, 0, 2, 1, 4)
        return head[0], F.softplus(head[1] - 1.0) + 1e-3
