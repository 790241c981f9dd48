import math

import pytest
import torch
import torch.nn.functional as F

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models import build_model, count_parameters

FAMILIES = ["transformer", "gru", "lstm", "cnn"]


def small(family, **kw):
    return ModelConfig(family=family, n_layer=2, n_head=2, n_embd=32, context_length=16, **kw)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("vocab", [65, 1000])
def test_loss_at_initialisation_is_near_ln_v(family, vocab):
    torch.manual_seed(0)
    model = build_model(small(family), vocab)
    x = torch.randint(vocab, (8, 16))
    y = torch.randint(vocab, (8, 16))
    logits, _ = model(x)
    loss = F.cross_entropy(logits.view(-1, vocab), y.view(-1)).item()
    assert abs(loss - math.log(vocab)) < 0.05


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shapes_and_state(family):
    model = build_model(small(family), 50).eval()
    logits, state = model(torch.randint(50, (3, 10)), model.new_state())
    assert logits.shape == (3, 10, 50)
    assert state is not None


@pytest.mark.parametrize("family", FAMILIES)
def test_weight_tying_shares_the_embedding(family):
    tied = build_model(small(family), 50)
    untied = build_model(small(family, tie_weights=False), 50)
    assert tied.head.weight is tied.embed.weight
    assert count_parameters(untied) - count_parameters(tied) == 50 * 32


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_falls_on_a_repetitive_corpus(family):
    torch.manual_seed(0)
    vocab = 8
    data = torch.arange(vocab).repeat(50)  # 0 1 2 ... 7 0 1 ...: perfectly predictable
    model = build_model(small(family), vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(60):
        i = torch.randint(len(data) - 17, (8,))
        batch = torch.stack([data[j : j + 17] for j in i])
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * math.log(vocab)


def test_transformer_attention_is_causal():
    model = build_model(small("transformer"), 50).eval()
    x = torch.randint(50, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 50  # change the future only
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)


def test_cnn_receptive_field_is_exact():
    """A token R positions back changes nothing; one R - 1 back changes the logits."""
    cfg = ModelConfig(family="cnn", n_layer=3, n_embd=16, kernel_size=3, dilation_cycle=2)
    model = build_model(cfg, 50).eval()
    R = model.receptive_field
    assert R == 1 + 2 * (1 + 2 + 1)  # dilations 1, 2, 1
    x = torch.randint(50, (1, 20))
    far, near = x.clone(), x.clone()
    far[0, 19 - R] = (far[0, 19 - R] + 1) % 50
    near[0, 19 - R + 1] = (near[0, 19 - R + 1] + 1) % 50
    with torch.no_grad():
        last = model(x)[0][0, -1]
        assert torch.equal(model(far)[0][0, -1], last)
        assert not torch.allclose(model(near)[0][0, -1], last, atol=1e-6)
        # and the future never leaks in
        assert torch.equal(model(near)[0][0, : 19 - R + 1], model(x)[0][0, : 19 - R + 1])
