"""Importing PyTorch checkpoints (``best.pt`` and the like) that hold a state_dict.

Only ``torch.load(path, weights_only=True, map_location="cpu")`` ever reads the file: a pickle
that needs arbitrary Python objects is refused, never executed. The state_dict may sit at the
top level or under "model", "state_dict", "model_state_dict" or "module" (nested too); names
may carry the prefixes ``torch.compile`` ("_orig_mod.") or wrappers ("module.", "model.")
add. Names are those of a Hugging Face checkpoint of the architecture (MiniMind, Llama,
Qwen2, GPT-2), or nanoGPT's: a checkpoint with nanoGPT's "model_args" is read as GPT-2, its
nn.Linear weights transposed to GPT-2's Conv1D layout.

The config: a ModelConfig, a dict (our keys or a Hugging Face config.json's), the path of a
config.json, or None: the config.json beside the checkpoint, else nanoGPT's "model_args".
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np

from .. import _core
from ..model import Model, ModelConfig

#: Where trainers put the state_dict inside a checkpoint dict.
STATE_KEYS = ("model", "state_dict", "model_state_dict", "module")
#: Prefixes wrappers add to every name (stripped until the embedding's name appears).
PREFIXES = ("_orig_mod.", "module.", "model.")
#: The embedding's name in each layout we read: it tells when the prefixes are gone.
ANCHORS = ("model.embed_tokens.weight", "transformer.wte.weight", "wte.weight")
#: nanoGPT's nn.Linear weights, stored (out, in); GPT-2 checkpoints hold them (in, out).
NANOGPT_LINEAR = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("reading a PyTorch checkpoint needs torch: pip install torch") from None
    return torch


def read_checkpoint(path: str | os.PathLike):
    """torch.load(path, weights_only=True, map_location="cpu"), with clear errors."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: refused: torch.load(weights_only=True) cannot read it without running "
                         f"arbitrary pickled Python objects ({first}). Save the state_dict alone "
                         f"(torch.save(model.state_dict(), path)) and load that.") from None
    except (RuntimeError, EOFError) as exc:
        raise _core.FormatError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None


def _is_state_dict(value) -> bool:
    torch = _torch()
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def find_state_dict(obj, path) -> dict:
    """The state_dict inside a loaded checkpoint (top level or under STATE_KEYS, nested)."""
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if key in obj:
                try:
                    return find_state_dict(obj[key], path)
                except ValueError:
                    pass
    keys = ", ".join(map(repr, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{path}: no state_dict found (expected a dict of tensors, at the top level or under "
                     f"{', '.join(STATE_KEYS)}; found {keys})")


def strip_prefixes(state: dict) -> dict:
    """Removes wrapper prefixes shared by every name until an embedding's name appears."""
    while not any(a in state for a in ANCHORS):
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _nanogpt_config(args: dict, path) -> dict:
    if not args.get("bias", True):
        raise ValueError(f"{path}: a nanoGPT model with bias=False is not supported (GPT-2 has biases)")
    try:
        return {"model_type": "gpt2", "n_embd": args["n_embd"], "n_layer": args["n_layer"], "n_head": args["n_head"],
                "n_positions": args["block_size"], "vocab_size": args["vocab_size"]}
    except KeyError as exc:
        raise ValueError(f"{path}: model_args lacks {exc.args[0]!r}") from None


def resolve_config(config, path: Path, checkpoint) -> ModelConfig:
    """A ModelConfig from what load_checkpoint accepts (see the module's documentation)."""
    if isinstance(config, ModelConfig):
        return config
    context = "config"
    if config is None:
        beside = path.parent / "config.json"
        if beside.is_file():
            config = beside
        elif isinstance(checkpoint, dict) and isinstance(checkpoint.get("model_args"), dict):
            config = _nanogpt_config(checkpoint["model_args"], path)
            context = f"{path}: model_args"
        else:
            raise ValueError(f"{path}: no model config: pass one (a config.json, a dict or a ModelConfig; "
                             f"--config on the command line) or put config.json beside the checkpoint")
    if isinstance(config, (str, os.PathLike)):
        context = str(config)
        try:
            config = json.loads(Path(config).read_text())
        except json.JSONDecodeError as exc:
            raise _core.FormatError(f"{context}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise TypeError(f"config must be a ModelConfig, a dict or a path, got {type(config).__name__}")
    return _core.config_from_json(json.dumps(config), context)


def _numpy(name: str, tensor, transpose: bool) -> np.ndarray:
    torch = _torch()
    if tensor.is_floating_point():
        tensor = tensor.to(torch.float32)  # bfloat16 has no numpy dtype
    if transpose:
        tensor = tensor.t()
    return np.ascontiguousarray(tensor.detach().numpy())


def load_checkpoint(path: str | os.PathLike, config=None) -> Model:
    """A model from a PyTorch checkpoint holding a state_dict (see the module's documentation).

    Raises ValueError when the file is a pickle weights_only refuses or holds no state_dict,
    and FormatError naming a missing, unexpected or misshapen tensor.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    cfg = resolve_config(config, path, checkpoint)
    state = strip_prefixes(find_state_dict(checkpoint, path))
    nanogpt = isinstance(checkpoint, dict) and "model_args" in checkpoint
    tensors = {name: _numpy(name, t, nanogpt and t.ndim == 2 and name.endswith(NANOGPT_LINEAR))
               for name, t in state.items()}
    return Model(_core.model_from_hf_tensors(cfg, tensors, str(path)))
