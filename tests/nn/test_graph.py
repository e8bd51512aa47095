"""Graph blocks: message passing against a dense computation, graphs, rollouts, the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probtwin import DataError
from probtwin.nn.graph import EdgeMessages, GraphDynamics, check_edge_index, complete_graph, knn_graph, rollout
from probtwin.nn.sequence import NodeSequenceEncoder


def _dense(edge_index, weight, n):
    a = torch.zeros(*weight.shape[:-1], n, n)
    a[..., edge_index[0], edge_index[1]] = weight
    return a


def test_messages_equal_the_dense_sum_over_incoming_edges_for_batched_draws_and_trials():
    torch.manual_seed(0)
    n, d = 7, 3
    edges = complete_graph(n)[:, ::2]
    messages = EdgeMessages(d)
    torch.nn.init.normal_(messages.lin.weight)
    x = torch.randn(4, 5, n, d)  # (draws, trials, nodes, d)
    w = torch.randn(4, 1, edges.shape[1])  # a weight per draw and edge
    out = messages(x, edges, w)
    dense = _dense(edges, w[:, 0], n)  # (draws, source, target)
    w_msg = messages.lin.weight / messages.lin.weight.norm() * np.sqrt(d)  # W's norm is fixed
    torch.testing.assert_close(messages.weight, w_msg)
    expected = torch.einsum("sjn,sbjd->sbnd", dense, torch.tanh(x) @ w_msg.T)
    torch.testing.assert_close(out, expected)


def test_edge_gate_scales_each_message_by_a_function_of_its_attributes():
    torch.manual_seed(1)
    edges = torch.tensor([[0, 1], [1, 2]])
    messages = EdgeMessages(1, edge_dim=1)
    x = torch.ones(3, 1)
    attr = torch.tensor([[0.0], [5.0]])
    gate = torch.sigmoid(messages.gate(attr)).squeeze(-1)
    out = messages(x, edges, torch.ones(2), attr)
    h = torch.tanh(x) @ messages.weight.T
    torch.testing.assert_close(out[1:, 0], gate * h[:2, 0])
    assert out[0].abs().max() == 0  # node 0 receives nothing
    with pytest.raises(DataError, match="edge_attr"):
        messages(x, edges, torch.ones(2))


def test_complete_and_knn_graphs():
    e = complete_graph(4)
    assert e.shape == (2, 12) and not (e[0] == e[1]).any()
    assert len({(int(a), int(b)) for a, b in e.T}) == 12
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    k = knn_graph(coords, 1, chunk=3)  # chunked distances give the same answer
    pairs = {(int(a), int(b)) for a, b in k.T}
    assert pairs == {(1, 0), (0, 1), (3, 2), (2, 3)}
    with pytest.raises(DataError, match="k"):
        knn_graph(coords, 4)
    with pytest.raises(DataError, match="neuron_coords"):
        knn_graph(np.array([[np.nan, 0.0], [0.0, 0.0]]), 1)


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        (np.array([[0, 1, 2]]), "shape"),
        (np.array([[0, 5], [1, 0]]), "node indices"),
        (np.array([[0, 1], [0, 2]]), "self-loops"),
        (np.array([[0, 0], [1, 1]]), "distinct"),
        (np.array([[0.0], [1.0]]), "integer"),
    ],
)
def test_check_edge_index_refuses_bad_graphs(edges, message):
    with pytest.raises(DataError, match=message):
        check_edge_index(edges, 3)


def test_rollout_follows_the_dynamics_and_its_interventions():
    torch.manual_seed(2)
    n, d, frames = 5, 2, 6
    dyn = GraphDynamics(n, d, n_inputs=3)
    edges = complete_graph(n)
    w = 0.3 * torch.randn(edges.shape[1])
    x0 = torch.randn(4, n, d)
    u = torch.randn(4, frames, 3)
    noise = 0.1 * torch.randn(4, frames, n, d)
    with torch.no_grad():
        x = rollout(dyn, x0, u, edges, w, noise)
        torch.testing.assert_close(x[:, 0], x0)
        for t in range(frames - 1):  # the recursion, step by step
            torch.testing.assert_close(x[:, t + 1], dyn(x[:, t], u[:, t], edges, w) + noise[:, t + 1])
        # a unit clamped at a value stays there and others feel only its constant message
        silenced = torch.zeros(n, dtype=torch.bool)
        silenced[2] = True
        clamp = torch.full((n, d), 0.7)
        xs = rollout(dyn, x0, u, edges, w, noise, silenced=silenced, clamp=clamp)
        assert torch.allclose(xs[:, :, 2], torch.tensor(0.7))
        drive = torch.zeros(frames, n, d)
        drive[:, 1] = 1.0
        xd = rollout(dyn, x0, u, edges, w, torch.zeros_like(noise), drive=drive)
        torch.testing.assert_close(xd[:, 0, 1], x0[:, 1] + 1)


def test_dynamics_cost_is_sparse_in_the_graph():
    """Messages touch edges only: a node with no incoming edge gets none, however many nodes."""
    n = 2000
    dyn = GraphDynamics(n, 1)
    edges = torch.tensor([[0], [1]])
    x = torch.ones(3, n, 1)
    out = dyn.messages(x, edges, torch.ones(1))
    assert out.shape == (3, n, 1) and torch.count_nonzero(out) == 3


def test_sequence_encoder_shapes_masking_and_bidirectionality():
    torch.manual_seed(3)
    enc = NodeSequenceEncoder(n_nodes=6, n_inputs=2, latent_dim=3, hidden=8, context=4)
    counts = torch.poisson(torch.full((5, 9, 6), 2.0))
    observed = torch.ones(5, 6, dtype=torch.bool)
    u = torch.randn(5, 9, 2)
    loc, scale = enc(counts, observed, u)
    assert loc.shape == scale.shape == (5, 9, 6, 3) and (scale > 0).all()
    # a hidden unit's counts do not reach the encoder
    hidden = observed.clone()
    hidden[:, 4] = False
    changed = counts.clone()
    changed[:, :, 4] += 7
    torch.testing.assert_close(enc(counts, hidden, u)[0], enc(changed, hidden, u)[0])
    # the last frame's counts change the first frame's posterior (a smoother, not a filter)
    late = counts.clone()
    late[:, -1] += 5
    assert not torch.allclose(enc(late, observed, u)[0][:, 0], loc[:, 0])
