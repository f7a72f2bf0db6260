"""The served student's forward pass: the trained network's logits, computed the fast way.

A trained ``BiLSTMStudent`` packs its batch (``pack_padded_sequence``) so that padding never
reaches the backward direction. On a CPU the packed path runs torch's generic per-step loop
and spends about a third of its time gathering and scattering the packed rows; an unpacked
batch runs oneDNN's fused LSTM kernel instead, which also has a bf16 path on AMX. In bf16 the
served BiLSTM (``ServedBiLSTM``):

- sorts the batch's rows by length and cuts them into chunks of ``CHUNK_ROWS`` rows, each run
  only as wide as its longest row (rounded up to ``WIDTH_STEP``), so little padding enters the
  kernel (``length_chunks``);
- runs both directions in one call of the kernel over the right-padded ids, with padding made
  inert: its word vector has one more column, 1 for padding and 0 for every word, whose input
  weight shuts the input and forget gates (``CLOSED``). A padding step therefore leaves a zero
  state at zero, so the backward direction, which meets a row's padding first, reaches the
  row's last token from the zero state as the packed network does; in the forward direction the
  padding after a row only feeds steps the mask drops. For a word the extra column adds zero:
  the gates are the trained network's;
- max-pools both directions over the valid positions.

In fp32 the logits equal the packed network's to float rounding (tests/unit/models/
test_student_serving.py); in bf16 they are rounded as the precision rounds them. One call for
both directions took 25.8 CPU-µs a tweet against 29.7 for two one-way calls (bf16, one thread,
emotion test batches of 256, docs/models.md).

In fp32 the kernel is slower than a plain loop of torch calls over the time steps on a CPU
without AVX-512 (51-57 against 38-40 CPU-µs a tweet, same batches, an AVX2 machine), so fp32 is
served by ``SteppedBiLSTM``: rows sorted longest first, each word's gate inputs one row of a table,
both directions in one batched product per step (see the class).

A ``CNNStudent``'s convolution is linear in its word vectors, so the served cnn folds the two
into one table, ``taps[word, tap]``: that word's contribution to a window it sits at position
``tap`` of. A window's state is then the sum of ``width`` rows of the table, gathered for the
batch's tokens only (no padding), and the max-pool a scatter over each token's row
(``ServedCNN``). On emotion test batches of 256 that is 5–7 CPU-µs a tweet against 45–70 for the
trained network's padded ``Conv1d``, with the same logits to float rounding. Networks with
another shape (an MLP, a stacked BiLSTM) are served as they are.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from models.student_nets import BiLSTMStudent, CNNStudent
from models.student_tokenizer import PAD_ID

CHUNK_ROWS = 32
"""Rows per kernel call. The kernel's time grows with rows × steps, plus a fixed cost per call
(about 0.2 ms with its weight reorders): sorted rows in chunks of 32 leave little padding in
each chunk at a few calls per batch. A batch's row count is padded up to a multiple of it with
empty rows (sorted first, into the shortest chunk)."""

WIDTH_STEP = 4
"""A chunk runs for its longest row's length rounded up to this many tokens. oneDNN builds and
caches a kernel, with its scratch memory, per input shape: with a fixed row count, a stream's
batches (up to 64 tokens a row) come in at most 64 / 4 = 16 shapes, where free row counts made
the process grow by 130 MB (fp32) to 270 MB (bf16) over 1,200 batches, still rising."""


def length_chunks(lengths: torch.Tensor, rows: int = CHUNK_ROWS, step: int = WIDTH_STEP) -> tuple[torch.Tensor, list[int]]:
    """The order that sorts ``lengths`` (shortest first) and each chunk's width, for ``lengths`` already
    padded to a multiple of ``rows``: its longest length rounded up to ``step`` (at least ``step``).

    >>> order, widths = length_chunks(torch.tensor([3, 20, 9, 1]), rows=2, step=4)
    >>> order.tolist(), widths
    ([3, 0, 2, 1], [4, 20])
    """
    order = torch.argsort(lengths, stable=True)
    longest = lengths[order].view(-1, rows).amax(dim=1).clamp(min=1)
    return order, ((longest + step - 1) // step * step).tolist()


CLOSED = -1.0e4
"""The input and forget gates' weight on the padding column: their sigmoid underflows to 0 in fp32
and bf16, so a padding step sets the cell to 0 × c + 0 × g and the state to o × tanh(0) = 0."""


def inert_padding_lstm(lstm: nn.LSTM, embedding: nn.Embedding) -> tuple[nn.Embedding, nn.LSTM]:
    """``embedding`` with a padding column and a copy of one-layer bidirectional ``lstm`` that reads it
    (see the module).

    >>> torch.manual_seed(0) and None
    >>> words, lstm = inert_padding_lstm(nn.LSTM(3, 2, bidirectional=True), nn.Embedding(5, 3, padding_idx=PAD_ID))
    >>> words.weight[PAD_ID].tolist(), words.weight[1, 3].item()
    ([0.0, 0.0, 0.0, 1.0], 0.0)
    >>> with torch.no_grad():
    ...     states, _ = lstm(words(torch.tensor([[PAD_ID, PAD_ID]])))
    >>> states.abs().max().item()
    0.0
    """
    hidden, size = lstm.hidden_size, lstm.input_size
    vectors = F.pad(embedding.weight.detach(), (0, 1))
    vectors[PAD_ID] = 0.0
    vectors[PAD_ID, size] = 1.0
    column = torch.zeros(4 * hidden, 1)
    column[: 2 * hidden] = CLOSED  # rows: the input gate, then the forget gate (then the cell and output gates)
    served = nn.LSTM(size + 1, hidden, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for suffix in ("", "_reverse"):
            getattr(served, "weight_ih_l0" + suffix).copy_(torch.cat([getattr(lstm, "weight_ih_l0" + suffix), column], dim=1))
            for name in ("weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(served, name + suffix).copy_(getattr(lstm, name + suffix))
    return nn.Embedding.from_pretrained(vectors, freeze=True), served


class ServedBiLSTM(nn.Module):
    """A one-layer ``BiLSTMStudent``'s inference, unpacked, in chunks of rows of similar length (see the module)."""

    def __init__(self, net: BiLSTMStudent, dtype: torch.dtype = torch.float32):
        super().__init__()
        if net.lstm.num_layers != 1 or not net.lstm.bidirectional:
            raise ValueError("ServedBiLSTM serves a one-layer bidirectional LSTM")
        self.embedding, self.lstm = inert_padding_lstm(net.lstm, net.embedding)
        self.out = copy.deepcopy(net.out)
        self.to(dtype).eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        count, longest = ids.shape
        total, width = -(-count // CHUNK_ROWS) * CHUNK_ROWS, -(-longest // WIDTH_STEP) * WIDTH_STEP
        padded = torch.full((total, width), PAD_ID, dtype=ids.dtype)  # empty rows first: they sort first anyway
        padded[total - count:, :longest] = ids  # and every chunk's width a multiple of WIDTH_STEP
        lengths = (padded != PAD_ID).sum(dim=1)
        order, widths = length_chunks(lengths)
        ids, lengths = padded[order], lengths[order]
        dtype = self.out.weight.dtype
        # additive mask: 0 on a row's tokens, -inf after them, so amax pools the valid steps only
        padding = torch.zeros((total, width, 1), dtype=dtype).masked_fill_(
            (torch.arange(width) >= lengths.unsqueeze(1)).unsqueeze(-1), float("-inf"))
        pooled = torch.empty(total, 2 * self.lstm.hidden_size, dtype=dtype)
        for chunk, steps in enumerate(widths):
            rows = slice(chunk * CHUNK_ROWS, (chunk + 1) * CHUNK_ROWS)
            states, _ = self.lstm(self.embedding(ids[rows, :steps]))  # embedded as wide as the chunk runs
            torch.amax(states + padding[rows, :steps], dim=1, out=pooled[rows])
        pooled.masked_fill_((lengths == 0).unsqueeze(1), 0.0)  # a row without tokens pools to zeros
        unsorted = torch.empty_like(pooled)
        unsorted[order] = pooled
        return self.out(unsorted[total - count:])


class SteppedBiLSTM(nn.Module):
    """A one-layer ``BiLSTMStudent``'s inference in fp32: one short run of torch calls per time step.

    oneDNN's fp32 LSTM kernel is slow on a CPU without AVX-512 (51-57 CPU-µs a tweet on an AVX2
    machine against 38-40 for this class, emotion test batches of 256, one thread: docs/models.md):
    it reorders its weights at every call and runs each chunk's small matrix products one step at a
    time. Here:

    - the batch's rows are sorted longest first, so the rows that have a token at step ``t`` are
      the first ``active[t]`` rows, and finished rows simply drop off the end (as packing does);
    - each word's input to the gates (its vector times the input weights, plus both biases) is one
      row of a table per direction, gathered once per batch for the valid tokens only, time-major,
      so each step's rows are contiguous; the backward direction reads each row from its last token;
    - both directions' recurrent products are one batched matrix product per step;
    - ``tanh(x) = 2 sigmoid(2x) - 1``: the cell gate's weights are doubled and the cell state is
      kept doubled, so one sigmoid covers all four gates and another the state (torch's tanh costs
      about three times its sigmoid per element on AVX2);
    - the max-pool is updated for the running rows only, so it covers each row's valid steps.

    The logits equal the packed network's to float rounding (tests/unit/models/test_student_serving.py).
    """

    def __init__(self, net: BiLSTMStudent):
        super().__init__()
        lstm = net.lstm
        if lstm.num_layers != 1 or not lstm.bidirectional:
            raise ValueError("SteppedBiLSTM serves a one-layer bidirectional LSTM")
        hidden = self.hidden = lstm.hidden_size
        self.gate_columns = [slice(gate * hidden, (gate + 1) * hidden) for gate in range(4)]  # input, forget, cell, output
        doubled = torch.ones(4 * hidden, 1)
        doubled[2 * hidden: 3 * hidden] = 2.0  # the cell gate's rows (gates: input, forget, cell, output)
        words = net.embedding.weight.detach().float()
        tables, recurrent = [], []
        with torch.no_grad():
            for suffix in ("", "_reverse"):
                weights = getattr(lstm, "weight_ih_l0" + suffix).float() * doubled
                bias = (getattr(lstm, "bias_ih_l0" + suffix) + getattr(lstm, "bias_hh_l0" + suffix)).float() * doubled[:, 0]
                tables.append(torch.addmm(bias, words, weights.T))
                recurrent.append((getattr(lstm, "weight_hh_l0" + suffix).float() * doubled).T)
        self.register_buffer("forward_table", tables[0].contiguous())  # [vocabulary, 4 × hidden]
        self.register_buffer("backward_table", tables[1].contiguous())
        self.register_buffer("recurrent", torch.stack(recurrent).contiguous())  # [direction, hidden, 4 × hidden]
        self.out = copy.deepcopy(net.out).float().eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        count, width = ids.shape
        hidden = self.hidden
        lengths = (ids != PAD_ID).sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        ids, lengths = ids[order], lengths[order]
        steps = torch.arange(width)
        valid = (steps < lengths.unsqueeze(1)).T  # [step, row]: at each step a prefix of the rows
        reversed_ids = ids.gather(1, (lengths.unsqueeze(1) - 1 - steps).clamp(min=0))  # each row from its last token
        forward_ids, backward_ids = ids.T[valid], reversed_ids.T[valid]  # time-major, valid tokens only
        inputs = torch.empty(2, forward_ids.shape[0], 4 * hidden)
        torch.index_select(self.forward_table, 0, forward_ids, out=inputs[0])
        torch.index_select(self.backward_table, 0, backward_ids, out=inputs[1])
        state = torch.zeros(2, count, hidden)
        cell = torch.zeros(2, count, hidden)  # twice the cell state (see the class)
        pooled = torch.full((2, count, hidden), float("-inf"))
        start = 0
        for running in valid.sum(dim=1).tolist():
            if running == 0:
                break
            gates = torch.baddbmm(inputs[:, start: start + running], state[:, :running], self.recurrent).sigmoid_()
            start += running
            in_gate, forget, cell_gate, out_gate = (gates[..., gate] for gate in self.gate_columns)
            cell = forget * cell[:, :running]  # c' = f c' + 2 i (2 sigmoid(2g) - 1), with c' = 2c
            cell.addcmul_(in_gate, cell_gate, value=4.0).sub_(in_gate, alpha=2.0)
            state = out_gate * torch.sigmoid(cell).mul_(2.0).sub_(1.0)  # o tanh(c)
            pooled_running = pooled[:, :running]
            torch.maximum(pooled_running, state, out=pooled_running)
        pooled = torch.cat((pooled[0], pooled[1]), dim=1).masked_fill_((lengths == 0).unsqueeze(1), 0.0)
        unsorted = torch.empty_like(pooled)
        unsorted[order] = pooled  # a row without tokens pools to zeros, as the trained network's does
        return self.out(unsorted)


class ServedCNN(nn.Module):
    """A ``CNNStudent``'s inference over the batch's tokens only, its convolution folded into a table
    of each word's contribution at each tap (see the module)."""

    def __init__(self, net: CNNStudent, dtype: torch.dtype = torch.float32):
        super().__init__()
        conv = net.conv
        self.width = conv.kernel_size[0]
        with torch.no_grad():
            taps = torch.einsum("cek,ve->vkc", conv.weight, net.embedding.weight)
            taps[PAD_ID] = 0.0  # the trained network masks padding's vectors to zero
        self.register_buffer("taps", taps.reshape(-1, taps.shape[-1]).contiguous())  # row word * width + tap
        self.register_buffer("bias", conv.bias.detach().clone())
        self.register_buffer("tap", torch.arange(self.width), persistent=False)  # each window's offsets
        self.out = copy.deepcopy(net.out)
        self.to(dtype).eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        rows, columns = (ids != PAD_ID).nonzero(as_tuple=True)  # one window per token, centred on it
        padded = F.pad(ids, (half, half), value=PAD_ID)  # as the convolution's zero padding
        window = padded[rows.unsqueeze(1), columns.unsqueeze(1) + self.tap]
        states = torch.relu_(F.embedding_bag(window * self.width + self.tap, self.taps, mode="sum") + self.bias)
        # every state is >= 0 after the ReLU, so a max that starts at zero is the masked max (and a
        # row without tokens pools to zeros, as the trained network's does)
        pooled = torch.zeros((ids.shape[0], states.shape[1]), dtype=states.dtype)
        pooled.scatter_reduce_(0, rows.unsqueeze(1).expand_as(states), states, "amax")
        return self.out(pooled)


def serving_net(net: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The network to serve ``net`` with in ``dtype``: for a one-layer BiLSTM a ``SteppedBiLSTM`` in fp32
    and a ``ServedBiLSTM`` otherwise, for a cnn a ``ServedCNN`` (copies), else ``net`` itself, cast in place."""
    if isinstance(net, BiLSTMStudent) and net.lstm.num_layers == 1:
        return SteppedBiLSTM(net) if dtype == torch.float32 else ServedBiLSTM(net, dtype)
    if isinstance(net, CNNStudent):
        return ServedCNN(net, dtype)
    return net.to(dtype).eval()
