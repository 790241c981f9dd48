"""Tiny random Hugging Face models made with transformers, saved as a hub folder would hold them
(save_pretrained: config.json, model.safetensors, tokenizer.json, ...): what the import tests
read. Nothing here reaches the network."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n") * 8

# SmolLM2's chat template (ChatML), and the Zephyr one TinyLlama-Chat ships (blocks on lines of
# their own: rendering depends on trim_blocks and lstrip_blocks, as transformers sets them).
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
          "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")


def byte_level_tokenizer(specials: list[str], vocab_size: int = 320):
    """A GPT-2-style byte-level BPE (GPT-2, SmolLM2) trained on TEXT, as transformers' fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def gpt2_folder(folder: Path, tied: bool = True, n_positions: int = 32) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_level_tokenizer(["<|endoftext|>"])
    tokenizer.bos_token = tokenizer.eos_token = "<|endoftext|>"
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0, tie_word_embeddings=tied)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def llama_folder(folder: Path, kv_heads: int = 2, tied: bool = False, template: str = CHATML,
                 context: int = 128) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|user|>",
                                      "<|assistant|>", "<|system|>"])
    tokenizer.bos_token, tokenizer.eos_token = "<|im_start|>", "<|im_end|>"
    tokenizer.chat_template = template
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=context,
                         rope_theta=5000.0, rms_norm_eps=1e-6, tie_word_embeddings=tied,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norms, so that a norm mapped wrongly shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def import_folder(folder: Path, runs_root: Path, name: str = "tiny") -> Path:
    """A model folder imported as a run under runs_root (no hub: the folder is the source); its path."""
    from minigpt_tui.core.pretrained.importer import import_model

    def fetch(source: str, progress: bool = True) -> SimpleNamespace:
        return SimpleNamespace(path=Path(source), source=source, revision=None)

    return import_model(str(folder), name=name, runs_root=runs_root, progress=False, fetch=fetch).path
