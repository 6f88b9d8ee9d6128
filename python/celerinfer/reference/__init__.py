"""PyTorch reference for the `llama`, `qwen2` and `gpt2` architectures (plain eager torch).

This file is the independent twin of the C++ engine: it is written from the math of the model,
not from the C++ code, and is what the parity tests and `--backend torch` compare against.
torch is an optional dependency of celerinfer; this package imports it and is only imported on
demand (`from celerinfer import reference`).

The model (MiniMind / Llama / Qwen2 style):

    x = embed_tokens[input_ids]                               # (B, S, C)
    for each layer:
        x = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))
                                                              # n = input_layernorm(x)
        x = x + down_proj(silu(gate_proj(n)) * up_proj(n))    # n = post_attention_layernorm(x)
    logits = lm_head(norm(x))                                 # (B, S, vocab)

qwen2 is the same with biases on q_proj, k_proj and v_proj. gpt2 (HF GPT-2 / nanoGPT) adds a
learned position embedding to x instead of RoPE, uses LayerNorm with a bias (eps
layer_norm_epsilon) for every norm, biases on every projection, and an ungated MLP
down_proj(gelu(up_proj(n))) with GELU's tanh form ("gelu_new") or exact erf form ("gelu").
The weights come in the engine's layout for all three (celerinfer Model.state_dict(): Llama
names, (out, in) linear weights, separate q/k/v, "model.embed_positions.weight" for wpe).

Attention mask semantics (seed JSON / MiniMind): positions are 0..S-1 for every row, whatever
the padding (they are NOT shifted for left padding). A query at position i attends to the keys
at positions j <= i whose attention_mask is 1. A query with no allowed key gets a zero attention
output (never NaN). Outputs at padded query positions are unspecified.

Generation (greedy) runs every KV-cache version of the registry from its knobs (VERSIONS,
version_spec; see :mod:`.kv_cache`): step 0 runs the prompt and takes the logits at its last
position, each later step runs the one new token. With a cache, each layer first WRITES the new
tokens' K (after RoPE) and V to its cache (fp32, fp16, INT8/INT4/INT2 per token or per channel
with a residual window), then attends over all it kept READ back, then evicts what the method
gives up (StreamingLLM, H2O). With Reuse sharing, odd layer 2i+1 attends over layer 2i's K/V
(`forward(..., sharing=True)` is the same function without a cache); with Merge (MiniCache)
a pair of layers reads K/V rebuilt from one merged direction and each layer's norm.

The package: :mod:`.layers` (config, RoPE, norms, attention, MLP, block), :mod:`.kv_cache`
(the versions' flags, quantizers, KVCache), :mod:`.model` (ReferenceModel and the numpy
helpers), :mod:`.weight_formats` (the twins of the engine's weight formats) and
:mod:`.torch_engine` (an eager PyTorch baseline for `bench compare`). The names below are the
reference's everyday API.
"""

from .kv_cache import (BITS, VERSIONS, KVCache, cache_bytes, dequantize_int8, fp16_round_trip, new_caches,
                       quantize_int8_per_channel, quantize_int8_per_token, round_trip, version_spec)
from .layers import (ARCHITECTURES, MLP, Attention, Block, LayerNorm, RMSNorm, allowed_keys, apply_rope,
                     default_intermediate_size, rope_tables, rotate_half)
from .model import ReferenceModel, generate, logits, score

__all__ = ["ARCHITECTURES", "Attention", "BITS", "Block", "KVCache", "cache_bytes", "new_caches", "round_trip", "LayerNorm", "MLP", "RMSNorm",
           "ReferenceModel", "VERSIONS", "allowed_keys", "apply_rope", "default_intermediate_size",
           "dequantize_int8", "fp16_round_trip", "generate", "logits", "quantize_int8_per_channel",
           "quantize_int8_per_token", "rope_tables", "rotate_half", "score", "version_spec"]
