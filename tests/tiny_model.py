"""A tiny model of the embedded model's architecture, made in the test: no download, seconds to train.

SmolLM2 is a Llama-architecture causal LM with a ChatML template; the tiny model is a
randomly initialised ``LlamaForCausalLM`` with a word-level tokenizer over the words the
tests use and the same template, saved as a Hugging Face folder — what ``--base`` takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""SmolLM2's chat template, less its default system message."""

WORDS = (
    "add two numbers the first is 2 second 3 what are they ? 5 sum answer which number do you mean "
    "user assistant system please tell me a task convert temperature 30 degrees celsius to fahrenheit 86 "
    "i need more information could share it is ok thanks here go ahead . , !"
).split()


def training_stack() -> None:
    """Skip unless the training stack is installed (``make test`` installs it)."""
    for name in ("torch", "transformers", "peft", "trl", "accelerate"):
        pytest.importorskip(name)


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Llama model and its tokenizer in ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    vocab = {token: i for i, token in enumerate([*specials, *dict.fromkeys(WORDS), "\n"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<unk>",
        additional_special_tokens=["<|endoftext|>"],
    )
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|im_end|>"],
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
