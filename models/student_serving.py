"""The served student's forward pass: the trained network's logits, computed the fast way.

A trained ``BiLSTMStudent`` packs its batch (``pack_padded_sequence``) so that padding never
reaches the backward direction. On a CPU the packed path runs torch's generic per-step loop
and spends about a third of its time gathering and scattering the packed rows; an unpacked
batch runs oneDNN's fused LSTM kernel instead, which also has a bf16 path on AMX. So the
served BiLSTM:

- groups the batch's rows by length (``length_groups``), so little padding enters the kernel;
- runs each direction as its own one-way LSTM: the forward one over the right-padded ids,
  the backward one over each row's valid tokens reversed (``reversed_rows``), so padding only
  ever follows a row's tokens, where the mask drops it;
- max-pools each direction over the valid positions. The max does not depend on the order of
  the time steps, so the reversed run pools to what the packed backward direction gives.

In fp32 the logits equal the packed network's to float rounding (tests/unit/models/
test_student_serving.py); in bf16 they are rounded as the precision rounds them. Networks with
another shape (an MLP, a stacked BiLSTM) are served as they are.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from models.student_nets import BiLSTMStudent
from models.student_tokenizer import PAD_ID

LENGTH_STEP = 16
"""Rows are grouped by their length rounded up to this many tokens, and each group is padded to
its rounded length: at most ``max_length / LENGTH_STEP`` kernel calls a direction."""

ROW_STEP = 16
"""Each group's row count is padded up to a multiple of this with empty rows. oneDNN builds and
caches a kernel, with its scratch memory, per input shape: with both steps a stream's batches
(1-256 tweets of up to 64 tokens) come in at most 64 shapes, where free row counts made the
process grow by 130 MB (fp32) to 270 MB (bf16) over 1,200 batches, still rising."""


def length_groups(lengths: torch.Tensor, step: int = LENGTH_STEP) -> list[tuple[torch.Tensor, int]]:
    """Row indices grouped by length rounded up to ``step``, with that rounded width, shortest first.

    >>> [(rows.tolist(), width) for rows, width in length_groups(torch.tensor([3, 20, 16, 1, 33]))]
    [([0, 2, 3], 16), ([1], 32), ([4], 48)]
    """
    widths = (lengths.clamp(min=1) + step - 1) // step * step
    return [(torch.nonzero(widths == width).flatten(), int(width)) for width in torch.unique(widths).tolist()]


def reversed_rows(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``length`` ids in reverse order, right-padded with ``PAD_ID`` as before.

    >>> reversed_rows(torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]), torch.tensor([3, 2])).tolist()
    [[7, 6, 5, 0], [9, 8, 0, 0]]
    """
    steps = torch.arange(ids.shape[1]).unsqueeze(0)
    valid = steps < lengths.unsqueeze(1)
    source = (lengths.unsqueeze(1) - 1 - steps).clamp(min=0)
    return torch.where(valid, ids.gather(1, source), torch.full_like(ids, PAD_ID))


def _one_direction(lstm: nn.LSTM, suffix: str) -> nn.LSTM:
    single = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(single, name).copy_(getattr(lstm, name + suffix))
    return single


def _masked_max(states: torch.Tensor, padding: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    # an additive 0 / -inf ``padding`` mask and amax (no argmax): 5x cheaper than masked_fill and
    # max on the kernel's batch-first output, a strided view of its time-major memory
    return (states + padding).amax(dim=1).masked_fill_(empty, 0.0)  # a row without tokens pools to zeros


class ServedBiLSTM(nn.Module):
    """A one-layer ``BiLSTMStudent``'s inference, unpacked and grouped by length (see the module)."""

    def __init__(self, net: BiLSTMStudent, dtype: torch.dtype = torch.float32):
        super().__init__()
        if net.lstm.num_layers != 1 or not net.lstm.bidirectional:
            raise ValueError("ServedBiLSTM serves a one-layer bidirectional LSTM")
        self.embedding = copy.deepcopy(net.embedding)
        self.forward_lstm = _one_direction(net.lstm, "")
        self.backward_lstm = _one_direction(net.lstm, "_reverse")
        self.out = copy.deepcopy(net.out)
        self.to(dtype).eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != PAD_ID).sum(dim=1)
        pooled = torch.zeros(ids.shape[0], 2 * self.forward_lstm.hidden_size, dtype=self.out.weight.dtype)
        for rows, width in length_groups(lengths):
            count = len(rows)
            group = torch.full((-(-count // ROW_STEP) * ROW_STEP, width), PAD_ID, dtype=ids.dtype)
            group[:count, :min(width, ids.shape[1])] = ids[rows, :width]
            mask = group != PAD_ID
            padding = torch.zeros(mask.shape, dtype=pooled.dtype).masked_fill_(~mask, float("-inf")).unsqueeze(-1)
            empty = ~mask.any(dim=1, keepdim=True)
            ahead, _ = self.forward_lstm(self.embedding(group))
            behind, _ = self.backward_lstm(self.embedding(reversed_rows(group, mask.sum(dim=1))))
            pooled[rows] = torch.cat([_masked_max(ahead, padding, empty), _masked_max(behind, padding, empty)], dim=1)[:count]
        return self.out(pooled)


def serving_net(net: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The network to serve ``net`` with in ``dtype``: a ``ServedBiLSTM`` (a copy) where one fits, else ``net``
    itself, cast in place."""
    if isinstance(net, BiLSTMStudent) and net.lstm.num_layers == 1:
        return ServedBiLSTM(net, dtype)
    return net.to(dtype).eval()
