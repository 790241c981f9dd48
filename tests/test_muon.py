"""Muon (core/training/muon.py): what it orthogonalizes, which parameters it takes, that it learns,
and that its state saves and resumes exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from minigpt_tui.core.config import ModelConfig, TrainConfig
from minigpt_tui.core.models import build_model
from minigpt_tui.core.training.adamw import AdamW
from minigpt_tui.core.training.muon import Muon, orthogonalize
from minigpt_tui.core.training.optim import make_optimizer

MUON = TrainConfig(learning_rate=3e-3, weight_decay=0.1, optimizer="muon")
VOCAB = 20


def tiny_model(family: str = "transformer", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(family=family, n_layer=2, n_head=2, n_embd=16, context_length=8), VOCAB)


def batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    # A learnable stream: each token is the previous one plus one (mod VOCAB), from a random start.
    starts = [torch.randint(VOCAB, (4, 1), generator=torch.Generator().manual_seed(seed + i)) for i in range(n)]
    return [(s + torch.arange(9)) % VOCAB for s in starts]


def train(model, optimizer, data, lr: float = 3e-3) -> list[float]:
    losses = []
    for batch in data:
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("shape", [(2, 48, 16), (16, 64), (64, 16), (3, 24, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_orthogonalize_brings_every_singular_value_near_one(shape, dtype):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    g[..., 0, :] *= 50  # one dominant direction: Adam-like scaling would keep it dominant
    out = orthogonalize(g, dtype)
    assert out.shape == g.shape and out.dtype == dtype
    s = torch.linalg.svdvals(out.float())
    # (the quintic trades exactness for speed: it lands in roughly 0.7-1.2, not on 1; and a random
    # square matrix, whose smallest singular values are near 0, would keep those small)
    assert s.min() > 0.5 and s.max() < 1.3


def test_muon_takes_the_blocks_matrices_and_adamw_everything_else():
    for family in ("transformer", "gru", "cnn"):
        model = tiny_model(family)
        optimizer = make_optimizer(model, MUON, torch.device("cpu"))
        assert isinstance(optimizer, Muon) and isinstance(optimizer.adamw, AdamW)
        names = {id(p): name for name, p in model.named_parameters()}
        muon = [names[id(p)] for p in optimizer.muon_group["params"]]
        adam = [names[id(p)] for g in optimizer.adamw.param_groups for p in g["params"]]
        assert sorted(muon + adam) == sorted(names.values())  # each parameter once
        assert muon and all(n.startswith("blocks.") and ".weight" in n for n in muon)
        assert "embed.weight" in adam and not any(n.startswith("blocks.") and model.get_parameter(n).dim() == 2
                                                   for n in adam)
        # one schedule drives both halves
        assert optimizer.param_groups[-1] is optimizer.muon_group
        assert len(optimizer.param_groups) == len(optimizer.adamw.param_groups) + 1


def test_muon_learns_a_tiny_sequence_task_at_adamws_learning_rate():
    data = batches(60)
    losses = {}
    for name in ("adamw", "muon"):
        model = tiny_model()
        cfg = TrainConfig(learning_rate=1e-2, weight_decay=0.1, optimizer=name)
        losses[name] = train(model, make_optimizer(model, cfg, torch.device("cpu")), data, lr=1e-2)
    first, last = losses["muon"][0], sum(losses["muon"][-5:]) / 5
    assert abs(first - torch.log(torch.tensor(float(VOCAB))).item()) < 0.5
    assert last < 0.5 * first
    # (the same learning rate means the same thing: Muon is no slower than AdamW here)
    assert last < 1.5 * sum(losses["adamw"][-5:]) / 5


def test_a_saved_muon_state_resumes_the_trajectory_bit_for_bit():
    data = batches(6)
    model = tiny_model()
    optimizer = make_optimizer(model, MUON, torch.device("cpu"))
    train(model, optimizer, data[:3])
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    buffer_before = next(iter(saved_optimizer["muon"]["state"].values()))["momentum_buffer"].clone()
    train(model, optimizer, data[3:])

    other = tiny_model(seed=1)
    other.load_state_dict(saved_model)
    resumed = make_optimizer(other, MUON, torch.device("cpu"))
    resumed.load_state_dict(saved_optimizer)
    train(other, resumed, data[3:])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))
    # loading copied the buffers: training on did not write into the saved state
    assert torch.equal(next(iter(saved_optimizer["muon"]["state"].values()))["momentum_buffer"], buffer_before)


def test_one_optimizers_state_is_refused_by_the_other():
    model = tiny_model()
    adamw_state = make_optimizer(model, TrainConfig(), torch.device("cpu")).state_dict()
    muon = make_optimizer(model, MUON, torch.device("cpu"))
    with pytest.raises(ValueError, match="not Muon's"):
        muon.load_state_dict(adamw_state)
    with pytest.raises(ValueError, match="Muon's"):
        make_optimizer(model, TrainConfig(), torch.device("cpu")).load_state_dict(muon.state_dict())
    wider = build_model(ModelConfig(family="transformer", n_layer=2, n_head=2, n_embd=32, context_length=8), VOCAB)
    train(model, muon, batches(1))
    with pytest.raises(ValueError, match="other matrices"):
        make_optimizer(wider, MUON, torch.device("cpu")).load_state_dict(muon.state_dict())


def test_resuming_with_the_other_optimizer_says_which_one_the_run_was_trained_with(tiny_corpus, tmp_path):
    from minigpt_tui.core.errors import CheckpointError
    from minigpt_tui.core.training.trainer import Trainer

    from kit import tiny_config

    config = tiny_config(tiny_corpus, max_steps=2)
    trained = Trainer(config, lambda e: None, recipe_name="tiny", runs_root=tmp_path / "runs")
    trained.run()
    config.train.optimizer = "muon"
    with pytest.raises(CheckpointError, match='trained with train.optimizer = "adamw"'):
        Trainer(config, lambda e: None, recipe_name="tiny", runs_root=tmp_path / "runs", resume_dir=trained.run_dir).run()
