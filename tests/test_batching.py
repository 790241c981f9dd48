import pytest
import torch

from minigpt_tui.core.data.batching import TokenStream
from minigpt_tui.core.errors import BatchError


def test_targets_are_inputs_shifted_by_one():
    stream = TokenStream(torch.arange(100), context_length=8)
    x, y = stream.batch(step=3, batch_size=4, seed=0)
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y, x + 1)  # arange: each target is the next token


def test_batches_are_a_pure_function_of_seed_and_step():
    stream = TokenStream(torch.arange(1000), context_length=8)
    a = stream.batch(5, 4, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, stream.batch(5, 4, seed=1)))
    assert not torch.equal(a[0], stream.batch(6, 4, seed=1)[0])
    assert not torch.equal(a[0], stream.batch(5, 4, seed=1, micro=1)[0])


def test_ranks_take_disjoint_slices_of_the_same_global_batch():
    stream = TokenStream(torch.arange(1000), context_length=8)
    whole = stream.batch(5, 8, seed=1)[0]
    r0 = stream.batch(5, 4, seed=1, rank=0, world_size=2)[0]
    r1 = stream.batch(5, 4, seed=1, rank=1, world_size=2)[0]
    assert torch.equal(torch.cat([r0, r1]), whole)


def test_eval_batches_are_fixed_and_cover_the_last_window():
    stream = TokenStream(torch.arange(20), context_length=19)  # exactly one window
    batches = stream.eval_batches(2, 3)
    assert len(batches) == 2
    assert torch.equal(batches[0][0][0], torch.arange(19))


def test_too_short_stream_is_a_clear_error():
    with pytest.raises(BatchError, match="context_length"):
        TokenStream(torch.arange(8), context_length=8, split="validation")
