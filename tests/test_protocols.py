"""One protocol per idea, and every implementation satisfies it: the tokenizers are Tokenizers,
the model families LanguageModels, the chat session and its process proxy Sessions. The checks
are isinstance against the runtime_checkable protocols (every member present), plus the
signatures of the methods, which isinstance does not look at."""

from __future__ import annotations

import inspect

import pytest
import torch

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.data.bpe_tokenizer import BPETokenizer
from minigpt_tui.core.data.tokenizer import (
    CharTokenizer,
    StreamDecoder,
    Tokenizer,
    WordTokenizer,
    tokenizer_from_json,
)
from minigpt_tui.core.generation.chat_session import ChatSession, StateMark
from minigpt_tui.core.generation.sampler_process import RemoteMark, SamplerProxy, SessionProxy
from minigpt_tui.core.generation.sampling import Sampler
from minigpt_tui.core.generation.session import Mark, SamplerControls, Session
from minigpt_tui.core.models import LanguageModel, build_model, unwrap
from minigpt_tui.core.models.cnn import ConvLanguageModel
from minigpt_tui.core.models.rnn import RNNLanguageModel
from minigpt_tui.core.models.transformer import Transformer

TEXT = "In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n"
CHAR = CharTokenizer.train(TEXT)
TOKENIZERS = [CHAR, WordTokenizer.train(TEXT), BPETokenizer.train(TEXT * 4, 280)]


def methods(protocol: type) -> list[str]:
    """The protocol's own methods (its properties and data members are not callables)."""
    return [name for name, value in vars(protocol).items()
            if inspect.isfunction(value) and not name.startswith("_")]


def same_parameters(implementation: object, protocol: type, only: list[str] | None = None) -> list[str]:
    """The methods (of `only`, else all) whose parameter names differ from the protocol's:
    callers pass them by name."""
    def names(f) -> list[str]:
        return [p for p in inspect.signature(f).parameters if p != "self"]

    return [m for m in only or methods(protocol)
            if names(getattr(type(implementation), m)) != names(getattr(protocol, m))]


@pytest.mark.parametrize("tokenizer", TOKENIZERS, ids=lambda t: t.kind)
def test_every_tokenizer_is_a_tokenizer_and_reads_back_from_its_json(tokenizer):
    assert isinstance(tokenizer, Tokenizer)
    assert isinstance(tokenizer.stream_decoder(), StreamDecoder)
    assert same_parameters(tokenizer, Tokenizer) == []
    again = tokenizer_from_json(tokenizer.to_json())
    assert type(again) is type(tokenizer) and again.to_json() == tokenizer.to_json()


def test_something_else_is_no_tokenizer():
    assert not isinstance("abc", Tokenizer) and not isinstance(object(), Session)


@pytest.mark.parametrize("family", ["transformer", "gru", "lstm", "cnn"])
def test_every_model_family_is_a_language_model(family):
    model = build_model(ModelConfig(family=family, n_layer=1, n_head=2, n_embd=16, context_length=8), 20)
    assert isinstance(model, {"transformer": Transformer, "cnn": ConvLanguageModel}.get(family, RNNLanguageModel))
    assert model.family == family
    assert isinstance(model, LanguageModel)
    # (the families' own methods: nn.Module's signatures are torch's)
    assert same_parameters(model, LanguageModel, ["new_state", "forward", "decode_step"]) == []

    class Wrapper(torch.nn.Module):  # as DDP holds a model: in .module
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    # A model wrapped for training is a module, not a LanguageModel: unwrap gives the model.
    assert not isinstance(Wrapper(model), LanguageModel) and unwrap(Wrapper(model)) is model


def test_the_chat_session_and_its_process_proxy_are_sessions():
    model = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=8), CHAR.vocab_size)
    sampler = Sampler(model, CHAR)
    session = ChatSession(sampler)
    assert isinstance(sampler, SamplerControls) and isinstance(session, Session)
    assert same_parameters(session, Session) == []
    mark = session.mark()
    assert isinstance(mark, StateMark) and isinstance(mark, Mark)

    # The proxies, without a child process behind them (an owner that answers every call).
    class Owner:
        def __init__(self):
            self.dropped, self.sent = [], []

        def send(self, msg):
            self.sent.append(msg)

        def call(self, *msg):
            self.sent.append(msg)

    owner = Owner()
    sampler_proxy = SamplerProxy(owner, CHAR)
    proxy = SessionProxy(owner, CHAR, sampler_proxy)
    assert isinstance(sampler_proxy, SamplerControls) and isinstance(proxy, Session)
    assert same_parameters(proxy, Session) == []
    remote = proxy.mark()
    assert isinstance(remote, RemoteMark) and isinstance(remote, Mark) and owner.sent == [("mark", remote.key)]
