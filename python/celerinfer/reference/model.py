"""ReferenceModel: the whole model in eager torch (full forward, forward through a KV cache,
greedy generation and teacher-forced scoring of every version), and numpy-in, numpy-out
helpers for celerinfer Models (logits, generate, score)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .kv_cache import cache_bytes, new_caches, version_spec
from .layers import Block, allowed_keys, float_tensor, index_tensor, linear_layer, norm_layer, read_config, rope_tables


# ------------------------------------------------------------------------------------ model ---

class ReferenceModel(nn.Module):
    """The model in eager torch, built from Hugging Face (Llama) named weights.

    config: an object (or dict) with architecture ("llama", "qwen2" or "gpt2"), hidden_size,
        num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size,
        max_position_embeddings, intermediate_size (0: the seed rule; gpt2: 4 * hidden),
        rms_norm_eps, rope_theta, tie_word_embeddings, hidden_act, layer_norm_epsilon.
    state_dict: Hugging Face name -> numpy array or tensor (linear weights are (out, in)).
    rope: None (tables from rope_theta) or (cos, sin), each (max_positions, head_dim).
    dtype: compute dtype of the weights and activations (RMSNorm and softmax run in float32 or
        wider); logits are returned in float32.
    """

    def __init__(self, config, state_dict, rope=None, dtype=torch.float32):
        super().__init__()
        cfg = read_config(config)
        self.config = cfg
        C = cfg["hidden_size"]
        V = cfg["vocab_size"]
        I = cfg["intermediate_size"]
        H = cfg["num_attention_heads"]
        KVH = cfg["num_key_value_heads"]
        D = C // H

        def weight(name, shape):
            if name not in state_dict:
                raise ValueError(f"missing tensor {name!r}")
            t = float_tensor(state_dict[name], name)
            if tuple(t.shape) != tuple(shape):
                raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}, "
                                 f"expected {tuple(shape)}")
            return t.to(dtype)

        self.embed_tokens = nn.Embedding(V, C, device="meta")
        self.embed_tokens.weight = nn.Parameter(weight("model.embed_tokens.weight", (V, C)),
                                                requires_grad=False)
        gpt2 = cfg["architecture"] == "gpt2"
        qkv_bias = cfg["architecture"] in ("qwen2", "gpt2")
        # learned positions (gpt2); added to the token embedding at positions 0..S-1
        self.register_buffer("embed_positions", weight("model.embed_positions.weight",
                                                       (cfg["max_position_embeddings"], C)) if gpt2 else None,
                             persistent=False)
        layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            shapes = {  # key in w: (name, shape, present)
                "input_layernorm": ("input_layernorm.weight", (C,), True),
                "input_layernorm_bias": ("input_layernorm.bias", (C,), gpt2),
                "post_attention_layernorm": ("post_attention_layernorm.weight", (C,), True),
                "post_attention_layernorm_bias": ("post_attention_layernorm.bias", (C,), gpt2),
                "q_proj": ("self_attn.q_proj.weight", (H * D, C), True),
                "q_proj_bias": ("self_attn.q_proj.bias", (H * D,), qkv_bias),
                "k_proj": ("self_attn.k_proj.weight", (KVH * D, C), True),
                "k_proj_bias": ("self_attn.k_proj.bias", (KVH * D,), qkv_bias),
                "v_proj": ("self_attn.v_proj.weight", (KVH * D, C), True),
                "v_proj_bias": ("self_attn.v_proj.bias", (KVH * D,), qkv_bias),
                "o_proj": ("self_attn.o_proj.weight", (C, H * D), True),
                "o_proj_bias": ("self_attn.o_proj.bias", (C,), gpt2),
                "gate_proj": ("mlp.gate_proj.weight", (I, C), not gpt2),
                "up_proj": ("mlp.up_proj.weight", (I, C), True),
                "up_proj_bias": ("mlp.up_proj.bias", (I,), gpt2),
                "down_proj": ("mlp.down_proj.weight", (C, I), True),
                "down_proj_bias": ("mlp.down_proj.bias", (C,), gpt2),
            }
            w = {key: weight(p + name, shape) for key, (name, shape, present) in shapes.items() if present}
            layers.append(Block(cfg, w))
        self.layers = nn.ModuleList(layers)
        final = {"norm": weight("model.norm.weight", (C,))}
        if gpt2:
            final["norm_bias"] = weight("model.norm.bias", (C,))
        self.norm = norm_layer(final, "norm", cfg)
        if cfg["tie_word_embeddings"]:
            # tied: the output projection is the embedding matrix (a stored lm_head is ignored)
            self.lm_head = nn.Linear(C, V, bias=False, device="meta")
            self.lm_head.weight = self.embed_tokens.weight
        else:
            self.lm_head = linear_layer(weight("lm_head.weight", (V, C)))

        if rope is None:
            # gpt2 has no RoPE: the tables are computed all the same (unused), to size the model
            cos, sin = rope_tables(D + D % 2, cfg["max_position_embeddings"], cfg["rope_theta"])
        else:
            if len(rope) != 2:
                raise ValueError("rope must be None or a tuple (cos, sin)")
            cos, sin = float_tensor(rope[0], "rope.cos"), float_tensor(rope[1], "rope.sin")
            for name, t in (("rope.cos", cos), ("rope.sin", sin)):
                if t.ndim != 2 or t.shape[1] != D:
                    raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}, "
                                     f"expected (max_positions, {D})")
            if cos.shape != sin.shape:
                raise ValueError(f"rope tables differ in shape: cos {tuple(cos.shape)}, "
                                 f"sin {tuple(sin.shape)}")
        self.register_buffer("rope_cos", cos.to(dtype), persistent=False)  # (max_pos, D)
        self.register_buffer("rope_sin", sin.to(dtype), persistent=False)  # (max_pos, D)

    @classmethod
    def from_model(cls, model, dtype=torch.float32):
        """Builds the reference from a celerinfer Model (its config, weights and RoPE tables)."""
        return cls(model.config, model.state_dict(), rope=model.rope, dtype=dtype)

    # ---------------------------------------------------------------- full-sequence forward ---

    def _check_inputs(self, input_ids, attention_mask, n_new=0):
        """ids (B, S) long and mask (B, S) bool tensors on the model's device, checked.

        n_new: tokens that will be appended (the positions 0..S+n_new-1 must fit the RoPE table).
        """
        device = self.embed_tokens.weight.device
        input_ids = index_tensor(input_ids, device).long()
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (B, S), got shape {tuple(input_ids.shape)}")
        B, S = input_ids.shape
        if S + n_new > self.rope_cos.shape[0]:
            raise ValueError(f"sequence length {S + n_new} exceeds the RoPE table "
                             f"({self.rope_cos.shape[0]} positions)")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config["vocab_size"]):
            raise ValueError(f"token id out of range [0, {self.config['vocab_size']})")
        if attention_mask is None:
            attention_mask = torch.ones(B, S, dtype=torch.bool, device=device)
        attention_mask = index_tensor(attention_mask, device)
        if tuple(attention_mask.shape) != (B, S):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, "
                             f"expected {(B, S)}")
        return input_ids, attention_mask.bool()

    def _embed(self, ids, start: int) -> torch.Tensor:
        """Token embeddings of ids (B, S) at positions start..start+S-1 (+ learned positions)."""
        x = self.embed_tokens(ids)
        if self.embed_positions is not None:
            x = x + self.embed_positions[start:start + ids.shape[1]]
        return x

    def forward(self, input_ids, attention_mask=None, sharing=False) -> torch.Tensor:
        """input_ids (B, S) ints, attention_mask (B, S) 0/1 or None -> logits (B, S, vocab) float32.

        sharing=True: cross-layer sharing (versions v3, v4 without their cache): layers come in
        pairs (0, 1), (2, 3), ...; the odd layer attends over the K and V computed by the even
        layer (its own k_proj and v_proj are not used). A last unpaired layer computes its own.
        """
        input_ids, attention_mask = self._check_inputs(input_ids, attention_mask)
        S = input_ids.shape[1]
        allowed = allowed_keys(attention_mask)                 # (B, 1, S, S)
        cos, sin = self.rope_cos[:S], self.rope_sin[:S]        # (S, D): positions 0..S-1
        x = self._embed(input_ids, 0)                          # (B, S, C)
        kv = None
        for i, block in enumerate(self.layers):
            x, kv = block(x, cos, sin, allowed, kv=kv if sharing and i % 2 == 1 else None)
        x = self.norm(x)
        return self.lm_head(x).float()                         # (B, S, V)

    def forward_shared(self, input_ids, attention_mask=None) -> torch.Tensor:
        """The full forward with cross-layer sharing: `forward(..., sharing=True)`."""
        return self.forward(input_ids, attention_mask, sharing=True)

    # ------------------------------------------------------------------- forward with a cache ---

    def new_caches(self, version) -> list:
        """One cache per layer for `version` (kv_cache.new_caches): None for a Reuse pair's odd
        layer (and every layer of v0)."""
        cfg = self.config
        return new_caches(version_spec(version), cfg["num_hidden_layers"],
                          cfg["hidden_size"] // cfg["num_attention_heads"])

    def forward_cached(self, new_ids, key_mask, caches) -> torch.Tensor:
        """Runs the S newest tokens through the model with a KV cache; logits (B, S, vocab) float32.

        new_ids: (B, S) long, the tokens at positions L-S..L-1, where L = key_mask.shape[1].
        key_mask: (B, L) bool, the attention mask of all positions (cached ones and the new).
        caches: from new_caches(): they hold what they kept of positions 0..L-S-1 and receive the
            new tokens. A layer whose cache is None reuses what the layer before it attended over
            (cross-layer sharing). After each layer, its cache evicts what its method gives up.
        """
        B, S = new_ids.shape
        L = key_mask.shape[1]
        allowed = allowed_keys(key_mask, n_queries=S)          # (B, 1, S, L)
        cos, sin = self.rope_cos[L - S:L], self.rope_sin[L - S:L]  # (S, D): positions L-S..L-1
        positions = torch.arange(L - S, L)
        new_valid = key_mask[:, L - S:]
        x = self._embed(new_ids, L - S)                        # (B, S, C)
        kv = None
        for block, cache in zip(self.layers, caches):
            if cache is None:
                x, kv = block(x, cos, sin, allowed, kv=kv)     # shares the previous layer's cache
            else:
                x, kv = block(x, cos, sin, allowed, cache=cache, positions=positions, key_valid=new_valid)
                cache.end_step()
        x = self.norm(x)
        return self.lm_head(x).float()                         # (B, S, V)

    def cache_bytes(self, caches, rows: int) -> int:
        """Bytes the caches hold (the engine's kv_cache_bytes, counted from the reference's own
        stored tensors)."""
        return cache_bytes(caches, rows)

    # ----------------------------------------------------------------------------- generation ---

    @torch.no_grad()
    def _decode(self, input_ids, attention_mask, version, n_steps, eos_token_id=None, forced=None, caches=None):
        """The generation loop of every version; greedy, or teacher-forced with `forced` (B, n).

        Step 0 runs the whole prompt (prefill) and takes the logits at its last position P-1 for
        every row; step t > 0 runs only the token chosen at step t-1, at position P+t-1. v0 (no
        cache) instead recomputes the whole current sequence each step. Generated tokens are
        always valid (mask 1). Returns tokens (B, P+T) long and logits (B, T, vocab) float32.
        caches: new_caches(version) to decode through (to inspect them afterwards), or None.
        """
        spec = version_spec(version)
        tokens, key_mask = self._check_inputs(input_ids, attention_mask, n_new=max(n_steps - 1, 0))
        B, P = tokens.shape
        if P == 0:
            raise ValueError("generation needs a prompt of at least one token")
        caches = self.new_caches(spec) if caches is None else caches
        new = tokens                                           # step 0 processes the prompt
        finished = torch.zeros(B, dtype=torch.bool, device=tokens.device)
        step_logits = []
        for t in range(n_steps):
            if spec["use_cache"]:
                out = self.forward_cached(new, key_mask, caches)                 # (B, S, V)
            else:
                out = self.forward(tokens, key_mask, sharing=spec["sharing"] == "reuse")
            logits_t = out[:, -1, :]                                              # (B, V)
            step_logits.append(logits_t)
            if forced is not None:
                next_token = forced[:, t]
            else:
                next_token = logits_t.argmax(dim=-1)           # ties: the lowest id
            if eos_token_id is not None:
                # a row that has emitted EOS keeps emitting it
                next_token = torch.where(finished, torch.full_like(next_token, eos_token_id),
                                         next_token)
                finished |= next_token == eos_token_id
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            key_mask = torch.cat([key_mask, torch.ones_like(key_mask[:, :1])], dim=1)
            new = next_token[:, None]
            if eos_token_id is not None and bool(finished.all()):
                break
        V = self.config["vocab_size"]
        logits_out = (torch.stack(step_logits, dim=1) if step_logits
                      else torch.zeros(B, 0, V))
        return tokens, logits_out

    def generate(self, input_ids, max_new_tokens, version="v1", attention_mask=None,
                 eos_token_id=None):
        """Greedy generation through `version`'s cache path (a name or a versions() dict).

        input_ids (B, P), attention_mask (B, P) 0/1 or None (left or right padding; positions
        are never shifted). Returns tokens (B, P+T) long and the raw logits each step picked
        from, (B, T, vocab) float32. T = max_new_tokens, or fewer with eos_token_id: once a row
        has emitted EOS its later tokens are EOS, and generation stops when every row has.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        return self._decode(input_ids, attention_mask, version, int(max_new_tokens),
                            eos_token_id=eos_token_id)

    def score(self, input_ids, continuation, version="v1", attention_mask=None, caches=None) -> torch.Tensor:
        """Teacher-forced decoding: the logits (B, T, vocab) from which each of the T tokens of
        `continuation` (B, T) is predicted, through `version`'s cache path, the prompt input_ids
        (B, P) processed as in generate. This is generate's loop with the tokens given.
        caches: new_caches(version), left holding what the run stored (for cache_bytes)."""
        device = self.embed_tokens.weight.device
        continuation = index_tensor(continuation, device).long()
        if continuation.ndim != 2 or continuation.shape[0] != len(input_ids):
            raise ValueError(f"continuation must be (B, T), got shape {tuple(continuation.shape)}")
        _, logits_out = self._decode(input_ids, attention_mask, version, continuation.shape[1],
                                     forced=continuation, caches=caches)
        return logits_out


def _ids_and_mask(input_ids, attention_mask):
    ids = torch.from_numpy(np.array(input_ids, dtype=np.int64))
    mask = None if attention_mask is None else torch.from_numpy(np.array(attention_mask) != 0)
    return ids, mask


def logits(model, input_ids, attention_mask=None, dtype=torch.float32, sharing=False) -> np.ndarray:
    """Reference logits of a celerinfer Model: numpy in, float32 numpy (B, S, vocab) out."""
    ref = ReferenceModel.from_model(model, dtype=dtype)
    ids, mask = _ids_and_mask(input_ids, attention_mask)
    with torch.no_grad():
        return ref(ids, mask, sharing=sharing).numpy().astype(np.float32, copy=False)


def generate(model, version, input_ids, max_new_tokens, attention_mask=None, eos_token_id=None,
             dtype=torch.float32):
    """Reference greedy generation of a celerinfer Model through `version`.

    Returns tokens (B, P+T) int64 and the step logits (B, T, vocab) float32, as numpy.
    """
    ref = ReferenceModel.from_model(model, dtype=dtype)
    ids, mask = _ids_and_mask(input_ids, attention_mask)
    tokens, step_logits = ref.generate(ids, max_new_tokens, version, attention_mask=mask,
                                       eos_token_id=eos_token_id)
    return tokens.numpy(), step_logits.numpy().astype(np.float32, copy=False)


def score(model, version, input_ids, continuation, attention_mask=None, dtype=torch.float32):
    """Reference teacher-forced step logits (B, T, vocab) float32 numpy of a celerinfer Model:
    the logits from which each token of `continuation` (B, T) is predicted through `version`."""
    ref = ReferenceModel.from_model(model, dtype=dtype)
    ids, mask = _ids_and_mask(input_ids, attention_mask)
    cont = torch.from_numpy(np.array(continuation, dtype=np.int64))
    step_logits = ref.score(ids, cont, version, attention_mask=mask)
    return step_logits.numpy().astype(np.float32, copy=False)
