"""Helpers of the Hugging Face tests: tiny transformers models with O(1) activations, saved as
checkpoint folders, and their logits. transformers is optional: importing this module skips
the importing test module when it is missing."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="transformers is an optional test dependency")


@contextlib.contextmanager
def quiet_transformers():
    """transformers' own warnings and progress bars (not ours: the suite turns warnings into
    errors), e.g. deprecation notes of its config classes and 'Writing model shards' bars."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()


def llama_config(**overrides):
    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                  intermediate_size=64, max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    values.update(overrides)
    with quiet_transformers():
        return transformers.LlamaConfig(**values)


def qwen2_config(**overrides):
    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                  intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=False,
                  bos_token_id=None, eos_token_id=None, pad_token_id=None)
    values.update(overrides)
    with quiet_transformers():
        return transformers.Qwen2Config(**values)


def gpt2_config(**overrides):
    values = dict(n_embd=32, n_layer=2, n_head=4, vocab_size=300, n_positions=64, bos_token_id=None,
                  eos_token_id=None, pad_token_id=None)
    values.update(overrides)
    with quiet_transformers():
        return transformers.GPT2Config(**values)


def hf_model(config, seed: int):
    """A transformers causal LM of `config` with weights large enough that attention is far from
    uniform and every weight shows in the logits (HF's own init, std 0.02, is nearly flat)."""
    torch.manual_seed(seed)
    with quiet_transformers():
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # norms near 1, biases small
                p.copy_((1.0 if name.endswith(("norm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0)
                        + 0.1 * torch.randn_like(p))
            else:
                fan_in = p.shape[1] if "embed" not in name and "wte" not in name and "wpe" not in name else 1
                p.copy_(torch.randn_like(p) * (1.5 / math.sqrt(fan_in)))
    return model.eval()


def save(model, folder, **kwargs):
    with quiet_transformers():
        model.save_pretrained(folder, **kwargs)
    return folder


def load_hf(folder):
    with quiet_transformers():
        return transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()


def hf_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(ids), dtype=torch.long)).logits.float().numpy()


def hf_greedy(model, ids, max_new_tokens: int) -> np.ndarray:
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    with quiet_transformers(), torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             min_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out.numpy()
