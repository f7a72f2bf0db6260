"""The served BiLSTM gives the packed network's logits, for every mix of lengths a stream sends."""

from __future__ import annotations

import pytest
import torch

from models.student_nets import BiLSTMStudent, MLPStudent
from models.student_serving import (
    ServedBiLSTM,
    length_groups,
    reversed_rows,
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


@pytest.mark.parametrize("lengths", [[1], [5, 5, 5], [1, 17, 3, 64, 16, 33, 2], [0, 4], list(range(1, 70, 3))])
def test_fp32_logits_equal_the_packed_network(bilstm, lengths):
    ids = right_padded(lengths)
    with torch.inference_mode():
        expected, served = bilstm(ids), ServedBiLSTM(bilstm)(ids)
    assert served.shape == expected.shape
    torch.testing.assert_close(served, expected, rtol=1e-5, atol=1e-5)


def test_the_backward_direction_sees_each_row_reversed(bilstm):
    # one row, two orders of its tokens: a network that ignored the backward weights, or read
    # padding before a row's last token, would not follow the packed one on both
    ids = torch.tensor([[3, 9, 4, 0, 0, 0], [4, 9, 3, 0, 0, 0]])
    with torch.no_grad():
        bilstm.lstm.weight_hh_l0_reverse.mul_(3.0)
    with torch.inference_mode():
        torch.testing.assert_close(ServedBiLSTM(bilstm)(ids), bilstm(ids), rtol=1e-5, atol=1e-5)


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
    with pytest.raises(ValueError, match="one-layer"):
        ServedBiLSTM(stacked)


def test_length_groups_cover_every_row_once():
    lengths = torch.tensor([0, 1, 16, 17, 64, 40, 2, 33])
    groups = length_groups(lengths)
    rows = torch.cat([rows for rows, _ in groups]).sort().values
    assert rows.tolist() == list(range(len(lengths)))
    assert all(int(lengths[r].max()) <= width and width % 16 == 0 for r, width in groups)


def test_reversed_rows_keep_padding_at_the_end():
    ids = right_padded([4, 1, 6])
    flipped = reversed_rows(ids, (ids != PAD_ID).sum(1))
    assert torch.equal(flipped != PAD_ID, ids != PAD_ID)
    assert torch.equal(reversed_rows(flipped, (ids != PAD_ID).sum(1)), ids)
