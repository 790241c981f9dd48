"""Our AdamW (core/training/adamw.py) is torch.optim.AdamW(fused=True): the same trajectory bit for
bit, checkpoints that load either way, and a trainer that never imports torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from minigpt_tui.core.config import ModelConfig, TrainConfig
from minigpt_tui.core.models import build_model
from minigpt_tui.core.training.adamw import AdamW, clip_divisor
from minigpt_tui.core.training.optim import make_optimizer

from kit import write_recipe

CFG = TrainConfig(learning_rate=3e-3, weight_decay=0.1, beta2=0.99)


def model_and_batches(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family="transformer", n_layer=1, n_head=2, n_embd=16, context_length=8), 20)
    batches = [torch.randint(20, (3, 9), generator=torch.Generator().manual_seed(seed + i)) for i in range(6)]
    return model, batches


def torch_adamw(model) -> torch.optim.AdamW:
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": CFG.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=CFG.learning_rate, betas=(CFG.beta1, CFG.beta2), fused=True)


def train(model, optimizer, batches, lrs) -> None:
    for batch, lr in zip(batches, lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits, _ = model(batch[:, :-1])
        torch.nn.functional.cross_entropy(logits.reshape(-1, 20), batch[:, 1:].reshape(-1)).backward()
        model.embed.weight.grad = None  # a parameter without a gradient this step is left alone
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_the_same_trajectory_as_torchs_fused_adamw_bit_for_bit():
    ours, batches = model_and_batches()
    theirs, _ = model_and_batches()
    optimizer = make_optimizer(ours, CFG, torch.device("cpu"))
    assert isinstance(optimizer, AdamW)
    lrs = [1e-3, 3e-3, 2e-3, 2e-3, 1e-3, 5e-4]
    train(ours, optimizer, batches, lrs)
    train(theirs, torch_adamw(theirs), batches, lrs)
    assert same_weights(ours, theirs) and not same_weights(ours, model_and_batches()[0])


@pytest.mark.parametrize("max_norm", [1e-3, 1e3], ids=["clipping", "not clipping"])
def test_clipping_inside_the_update_is_clip_grad_norm_then_the_update(max_norm):
    """The trainer's clipping for this optimizer (clip_divisor into step) against torch's
    clip_grad_norm_ before torch's fused AdamW: the same weights to float rounding, steps on."""
    ours, batches = model_and_batches()
    theirs, _ = model_and_batches()
    mine, reference = make_optimizer(ours, CFG, torch.device("cpu")), torch_adamw(theirs)
    for batch in batches:
        for model in (ours, theirs):
            logits, _ = model(batch[:, :-1])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 20), batch[:, 1:].reshape(-1)).backward()
        divisor = clip_divisor(ours.parameters(), max_norm)
        assert (divisor > 1) == (max_norm < 1)
        mine.step(divisor)
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
        reference.step()
        mine.zero_grad()
        reference.zero_grad()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
    assert not same_weights(ours, model_and_batches()[0])


@pytest.mark.parametrize("saver, loader", [("ours", "torch"), ("torch", "ours")])
def test_a_checkpoint_of_either_optimizer_resumes_in_the_other_exactly(saver, loader):
    make = {"ours": lambda m: make_optimizer(m, CFG, torch.device("cpu")), "torch": torch_adamw}
    first, batches = model_and_batches()
    optimizer = make[saver](first)
    train(first, optimizer, batches[:3], [2e-3] * 3)
    # (as a checkpoint file holds them: both state_dicts hold the live tensors)
    saved_model, saved_optimizer = copy.deepcopy(first.state_dict()), copy.deepcopy(optimizer.state_dict())
    some = min(saved_optimizer["state"])
    train(first, optimizer, batches[3:], [1e-3] * 3)

    resumed, _ = model_and_batches(seed=1)
    resumed.load_state_dict(saved_model)
    other = make[loader](resumed)
    other.load_state_dict(saved_optimizer)
    assert other.state_dict()["state"][some]["step"].item() == 3
    train(resumed, other, batches[3:], [1e-3] * 3)
    assert same_weights(first, resumed)
    if loader == "ours":  # (torch's load keeps the loaded tensors themselves)
        assert saved_optimizer["state"][some]["step"].item() == 3  # loading copied them


def test_state_for_other_parameter_groups_is_refused():
    model, _ = model_and_batches()
    optimizer = make_optimizer(model, CFG, torch.device("cpu"))
    saved = optimizer.state_dict()
    saved["param_groups"] = saved["param_groups"][:1]
    with pytest.raises(ValueError):
        optimizer.load_state_dict(saved)


def test_training_never_imports_torch_dynamo(tmp_path, tiny_corpus):
    """Building a torch optimizer imports torch._dynamo (1.5-2 s): `--train`'s path must not."""
    recipe = write_recipe(tmp_path, tiny_corpus, max_steps=3, eval_interval=2)
    script = ("import sys\n"
              "from minigpt_tui.cli.dispatch import main\n"
              f"status = main(['--train', {str(recipe)!r}])\n"
              "print(status, 'torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stderr


def test_devices_without_the_fused_kernel_get_torchs_adamw():
    model, _ = model_and_batches()
    assert isinstance(make_optimizer(model, CFG, torch.device("cpu")), AdamW)
    fallback = make_optimizer(model, CFG, torch.device("mps"))  # (only the device's kind is read)
    assert type(fallback) is torch.optim.AdamW and fallback.defaults["lr"] == CFG.learning_rate
    assert [g["weight_decay"] for g in fallback.param_groups] == [CFG.weight_decay, 0.0]
