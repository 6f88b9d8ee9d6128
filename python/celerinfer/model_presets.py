"""Model shapes by name, as ModelConfig keyword dicts (for random models of a known size).

GPT-2's four sizes (OpenAI's GPT-2 / Hugging Face ``gpt2``, ``gpt2-medium``, ``gpt2-large``,
``gpt2-xl``): vocabulary 50257, 1024 positions, tied lm_head, GELU (tanh), 4x MLP.
"""

from __future__ import annotations

from .model import ModelConfig


def _gpt2(hidden: int, layers: int, heads: int) -> dict:
    return dict(architecture="gpt2", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=heads, vocab_size=50257, max_position_embeddings=1024,
                intermediate_size=4 * hidden, layer_norm_epsilon=1e-5, hidden_act="gelu_new",
                tie_word_embeddings=True)


MODEL_PRESETS: dict[str, dict] = {
    "gpt2": _gpt2(768, 12, 12),           # 124M parameters
    "gpt2-medium": _gpt2(1024, 24, 16),   # 355M
    "gpt2-large": _gpt2(1280, 36, 20),    # 774M
    "gpt2-xl": _gpt2(1600, 48, 25),       # 1.56B
}


def preset_config(name: str) -> ModelConfig:
    """The ModelConfig of a preset name (KeyError-free: a ValueError lists the names)."""
    try:
        return ModelConfig(**MODEL_PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown model preset {name!r} (known: {', '.join(MODEL_PRESETS)})") from None
