"""The served BiLSTMs and cnn give the trained networks' logits, for every mix of lengths a stream sends."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.student_nets import BiLSTMStudent, CNNStudent, MLPStudent
from models.student_serving import (
    CHUNK_ROWS,
    WIDTH_STEP,
    ServedBiLSTM,
    ServedCNN,
    SteppedBiLSTM,
    inert_padding_lstm,
    length_chunks,
    serving_net,
)
from models.student_tokenizer import PAD_ID


def right_padded(lengths: list[int], vocab: int = 50, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), PAD_ID, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(1, vocab, (length,), generator=generator)
    return ids


@pytest.fixture
def bilstm() -> BiLSTMStudent:
    torch.manual_seed(0)
    return BiLSTMStudent(vocab_size=50, num_labels=4, embed_dim=8, hidden_dim=12).eval()


@pytest.mark.parametrize("lengths", [[1], [5, 5, 5], [1, 17, 3, 64, 16, 33, 2], [0, 4], list(range(1, 70, 3)),
                                     [(7 * i) % 65 for i in range(3 * CHUNK_ROWS + 5)]])
@pytest.mark.parametrize("served_as", [ServedBiLSTM, SteppedBiLSTM])
def test_fp32_logits_equal_the_packed_network(bilstm, lengths, served_as):
    ids = right_padded(lengths)
    with torch.inference_mode():
        expected, served = bilstm(ids), served_as(bilstm)(ids)
    assert served.shape == expected.shape
    torch.testing.assert_close(served, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("served_as", [ServedBiLSTM, SteppedBiLSTM])
def test_the_backward_direction_sees_each_row_reversed(bilstm, served_as):
    # one row, two orders of its tokens: a network that ignored the backward weights, or read
    # padding before a row's last token, would not follow the packed one on both
    ids = torch.tensor([[3, 9, 4, 0, 0, 0], [4, 9, 3, 0, 0, 0]])
    with torch.no_grad():
        bilstm.lstm.weight_hh_l0_reverse.mul_(3.0)
        bilstm.lstm.bias_ih_l0_reverse.add_(0.5)
    with torch.inference_mode():
        torch.testing.assert_close(served_as(bilstm)(ids), bilstm(ids), rtol=1e-5, atol=1e-5)


def test_fp32_is_served_stepwise_and_bf16_by_the_kernel(bilstm):
    assert isinstance(serving_net(bilstm), SteppedBiLSTM)
    assert isinstance(serving_net(bilstm, torch.bfloat16), ServedBiLSTM)


def test_the_stepped_bilstm_keeps_its_saturated_gates_and_large_states_exact():
    # large weights drive the sigmoids to 0 and 1 and the cells far from 0: 2 sigmoid(2x) - 1 must
    # still be tanh there
    torch.manual_seed(3)
    net = BiLSTMStudent(vocab_size=30, num_labels=3, embed_dim=6, hidden_dim=5).eval()
    with torch.no_grad():
        for parameter in net.lstm.parameters():
            parameter.mul_(8.0)
    ids = right_padded([40, 1, 7, 25], vocab=30, seed=2)
    with torch.inference_mode():
        torch.testing.assert_close(SteppedBiLSTM(net)(ids), net(ids), rtol=1e-5, atol=1e-5)


def test_bf16_keeps_the_labels_of_fp32(bilstm):
    ids = right_padded([3, 8, 21, 40, 12, 5, 30, 2] * 8, seed=1)
    served = serving_net(bilstm, torch.bfloat16)
    assert next(served.parameters()).dtype == torch.bfloat16
    with torch.inference_mode():
        expected, rounded = bilstm(ids), served(ids).float()
    assert (rounded - expected).abs().max() < 0.05
    assert (rounded.argmax(1) == expected.argmax(1)).float().mean() >= 0.95


def test_serving_leaves_the_trained_network_alone(bilstm):
    before = {name: tensor.clone() for name, tensor in bilstm.state_dict().items()}
    serving_net(bilstm, torch.bfloat16)
    assert all(torch.equal(before[name], tensor) for name, tensor in bilstm.state_dict().items())


def test_other_networks_are_served_as_they_are():
    mlp = MLPStudent(vocab_size=50, num_labels=3)
    assert serving_net(mlp) is mlp
    stacked = BiLSTMStudent(vocab_size=50, num_labels=3, embed_dim=8, hidden_dim=8, layers=2)
    assert serving_net(stacked) is stacked
    for served_as in (ServedBiLSTM, SteppedBiLSTM):
        with pytest.raises(ValueError, match="one-layer"):
            served_as(stacked)


def test_length_chunks_sort_every_row_once_and_cover_its_length():
    lengths = torch.tensor([0, 1, 16, 17, 64, 40, 2, 33] * 8)
    order, widths = length_chunks(lengths)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    assert len(widths) == len(lengths) // CHUNK_ROWS
    chunks = lengths[order].view(-1, CHUNK_ROWS)
    assert all(int(chunk.max()) <= width < int(chunk.max()) + WIDTH_STEP and width % WIDTH_STEP == 0
               for chunk, width in zip(chunks, widths))
    assert chunks[:, -1].tolist() == sorted(chunks[:, -1].tolist())  # shortest chunk first


def test_the_kernel_sees_whole_chunks_of_whole_width_steps(bilstm, monkeypatch):
    served, shapes = ServedBiLSTM(bilstm), set()
    run = served.lstm.forward
    monkeypatch.setattr(served.lstm, "forward", lambda x: shapes.add(tuple(x.shape[:2])) or run(x))
    with torch.inference_mode():
        for lengths in ([5], [3, 9, 1] * 15, [(5 * i) % 63 + 1 for i in range(77)]):
            served(right_padded(lengths))
    assert shapes and all(rows == CHUNK_ROWS and steps % WIDTH_STEP == 0 for rows, steps in shapes)


def test_a_row_gives_the_same_logits_however_much_padding_its_chunk_adds(bilstm):
    # the backward direction meets a row's padding first: padding must leave its zero state at zero
    row = right_padded([6])
    beside_a_long_row = right_padded([6, 64], seed=0)
    beside_a_long_row[0] = F.pad(row[0], (0, 58), value=PAD_ID)
    served = ServedBiLSTM(bilstm)
    with torch.inference_mode():
        torch.testing.assert_close(served(beside_a_long_row)[:1], served(row), rtol=1e-6, atol=1e-6)


def test_the_padding_column_shuts_the_input_and_forget_gates_and_adds_nothing_to_a_word(bilstm):
    words, lstm = inert_padding_lstm(bilstm.lstm, bilstm.embedding)
    hidden, size = bilstm.lstm.hidden_size, bilstm.lstm.input_size
    assert torch.equal(words.weight[1:, :size], bilstm.embedding.weight[1:]) and not words.weight[1:, size].any()
    for suffix in ("", "_reverse"):
        column = getattr(lstm, "weight_ih_l0" + suffix)[:, size]
        assert (column[: 2 * hidden] < -1e3).all() and not column[2 * hidden:].any()


@pytest.mark.parametrize("width", [1, 3, 5])
@pytest.mark.parametrize("lengths", [[1], [5, 5, 5], [1, 17, 3, 64, 16, 33, 2], [0, 4], list(range(1, 70, 3))])
def test_the_served_cnn_gives_the_trained_cnns_logits(width, lengths):
    torch.manual_seed(width)
    cnn = CNNStudent(vocab_size=50, num_labels=4, embed_dim=8, channels=12, width=width).eval()
    with torch.no_grad():
        cnn.conv.bias.uniform_(-0.5, 0.5)  # some states below zero before the ReLU, so the max sees both
    ids = right_padded(lengths, seed=width)
    with torch.inference_mode():
        expected, served = cnn(ids), serving_net(cnn)(ids)
    assert served.shape == expected.shape
    torch.testing.assert_close(served, expected, rtol=1e-5, atol=1e-5)


def test_the_served_cnn_reads_word_order_and_no_padding():
    torch.manual_seed(1)
    cnn = CNNStudent(vocab_size=50, num_labels=3, embed_dim=8, channels=12, width=3).eval()
    served = ServedCNN(cnn)
    swapped = torch.tensor([[3, 9, 4, 0, 0], [4, 9, 3, 0, 0]])
    more_padding = torch.tensor([[3, 9, 4, 0, 0, 0, 0, 0]])
    with torch.inference_mode():
        logits = served(swapped)
        assert not torch.allclose(logits[0], logits[1])  # the same words in another order
        torch.testing.assert_close(served(more_padding)[0], logits[0])
        torch.testing.assert_close(logits, cnn(swapped), rtol=1e-5, atol=1e-5)
    assert serving_net(cnn) is not cnn and isinstance(serving_net(cnn), ServedCNN)
