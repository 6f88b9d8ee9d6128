"""PyTorch twin of the engine's weight formats (``Engine(..., weight_dtype=...)``).

Written from the format's definition, not from the C++ code: the parity tests run the
reference model on the weights as these functions round them and hold the engine to it.

* ``bf16``: each value rounded to the nearest bfloat16 (ties to even); the linear layers'
  inputs are rounded the same way (bf16 x bf16 products summed in float32, as llama.cpp's
  BF16 type and the CPU's bf16 dot-product instructions compute).
* ``int8``: per row, blocks of 32 consecutive values (the last may be shorter); per block
  ``scale = fp16(max|w| / 127)``, ``q = clamp(round_half_even(w / scale), -127, 127)``; the
  value is ``q * scale`` (like llama.cpp's Q8_0).
* ``q4_0`` / ``q4_1``: llama.cpp's 4-bit blocks of 32 (a row's last block padded with zeros),
  quantized as llama.cpp's reference code does. q4_0: ``d = m / -8`` for ``m`` the value of
  largest magnitude, ``q = min(15, trunc(w / d + 8.5))``, value ``(q - 8) * fp16(d)``. q4_1:
  ``d = (max - min) / 15``, ``q = min(15, trunc((w - min) / d + 0.5))``, value
  ``q * fp16(d) + fp16(min)``. (The quotients are taken as products with 1/d, as there.)

Only the linear layers (attention and MLP projections, the output head) take the format; the
embedding table and the norm weights stay float32. Imports torch: import on demand.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model import config_to_dict
from .model import ReferenceModel

INT8_BLOCK = 32

#: The tensor-name suffixes of the linear layers the engine packs.
LINEAR_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "gate_proj.weight",
                   "up_proj.weight", "down_proj.weight")


def round_bf16(w: torch.Tensor) -> torch.Tensor:
    return w.float().to(torch.bfloat16).float()


def round_int8(w: torch.Tensor) -> torch.Tensor:
    """The values an (N, K) float32 matrix takes after int8 quantization."""
    w = w.float()
    n, k = w.shape
    pad = (-k) % INT8_BLOCK
    blocks = torch.nn.functional.pad(w, (0, pad)).reshape(n, -1, INT8_BLOCK)
    scale = (blocks.abs().amax(dim=2, keepdim=True) / 127).to(torch.float16).float()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.where(scale > 0, torch.round(blocks / safe), torch.zeros_like(blocks)).clamp(-127, 127)
    return (q * scale).reshape(n, -1)[:, :k]


def _blocks32(w: torch.Tensor) -> tuple[torch.Tensor, int]:
    w = w.float()
    k = w.shape[1]
    return torch.nn.functional.pad(w, (0, (-k) % 32)).reshape(w.shape[0], -1, 32), k


def _inverse(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d != 0, 1 / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))


def round_q4_0(w: torch.Tensor) -> torch.Tensor:
    """The values an (N, K) float32 matrix takes in llama.cpp's Q4_0."""
    blocks, k = _blocks32(w)
    idx = blocks.abs().argmax(dim=2, keepdim=True)  # the first of equal magnitudes, as a strict < scan keeps
    d = torch.gather(blocks, 2, idx) / -8
    q = torch.clamp(torch.trunc(blocks * _inverse(d) + 8.5), max=15)
    return ((q - 8) * d.half().float()).reshape(w.shape[0], -1)[:, :k]


def round_q4_1(w: torch.Tensor) -> torch.Tensor:
    """The values an (N, K) float32 matrix takes in llama.cpp's Q4_1."""
    blocks, k = _blocks32(w)
    lo, hi = blocks.amin(dim=2, keepdim=True), blocks.amax(dim=2, keepdim=True)
    d = (hi - lo) / 15
    q = torch.clamp(torch.trunc((blocks - lo) * _inverse(d) + 0.5), max=15)
    return (q * d.half().float() + lo.half().float()).reshape(w.shape[0], -1)[:, :k]


#: the twin of each engine weight format, by the format's name (tests check every format of the
#: C++ table has one)
ROUNDERS = {"f32": lambda w: w.float(), "bf16": round_bf16, "int8": round_int8, "q4_0": round_q4_0,
            "q4_1": round_q4_1}
#: Formats whose linear layers also round their inputs.
ROUNDS_INPUTS = {"bf16"}


def rounded_state_dict(model, weight_dtype: str) -> tuple[dict, dict]:
    """(config dict, state dict) of a celerinfer Model with its linear layers rounded as
    `weight_dtype` stores them. A tied head becomes an untied one: the engine rounds the head
    but looks tokens up in the float32 embedding table."""
    if weight_dtype not in ROUNDERS:
        raise ValueError(f"unknown weight_dtype {weight_dtype!r}; known: {', '.join(ROUNDERS)}")
    rnd = ROUNDERS[weight_dtype]
    config = config_to_dict(model.config)
    weights = {name: torch.from_numpy(np.array(value)) for name, value in model.state_dict().items()}
    out = {name: rnd(w) if name.endswith(LINEAR_SUFFIXES) else w.float() for name, w in weights.items()}
    head = weights["model.embed_tokens.weight"] if config["tie_word_embeddings"] else weights["lm_head.weight"]
    out["lm_head.weight"] = rnd(head)
    config["tie_word_embeddings"] = False
    return config, out


def reference_model(model, weight_dtype: str, **kwargs) -> ReferenceModel:
    """The PyTorch reference computing what the engine computes with `weight_dtype`: the
    rounded weights of rounded_state_dict and, for bf16, inputs to every linear layer rounded
    to bf16. kwargs go to ReferenceModel (rope, dtype)."""
    config, state = rounded_state_dict(model, weight_dtype)
    ref = ReferenceModel(config, state, **kwargs)
    if weight_dtype in ROUNDS_INPUTS:
        def round_input(_module, args):
            return (ROUNDERS[weight_dtype](args[0]).to(args[0].dtype),) + tuple(args[1:])

        for module in ref.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_pre_hook(round_input)
    return ref
