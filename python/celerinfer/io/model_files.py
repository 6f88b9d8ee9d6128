"""Loading a model file: the format follows the path (a seed JSON file, safetensors, a Hugging
Face folder, a PyTorch checkpoint). Kept apart from :mod:`celerinfer.model` so that the model
does not depend on the PyTorch importer (which itself builds Models)."""

from __future__ import annotations

import os
from pathlib import Path

from .. import _core
from ..model import Model
from .checkpoint import load_checkpoint

#: Suffixes of PyTorch checkpoint files (a state_dict loaded with torch.load(weights_only=True)).
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")


def load(path: str | os.PathLike, config=None) -> Model:
    """Load a model: a seed JSON file (.json), a .safetensors file, a Hugging Face checkpoint
    folder (config.json and model.safetensors, or shards with model.safetensors.index.json;
    memory-mapped) or its index file, or a PyTorch checkpoint (.pt, .pth, .ckpt; see
    :func:`celerinfer.load_checkpoint`, which `config` is passed to)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file or folder: {path}")
    name = path.name.lower()
    if path.is_dir() or name.endswith(".safetensors") or name.endswith(".safetensors.index.json"):
        _no_config(config, path)
        return Model(_core.load_safetensors(str(path)))
    if name.endswith(TORCH_SUFFIXES):
        return load_checkpoint(path, config)
    if name.endswith(".json"):
        _no_config(config, path)
        return Model(_core.load_seed_json(str(path)))
    raise ValueError(f"cannot tell the format of {path}: expected a folder, a .json (seed format), .safetensors "
                     f"or PyTorch ({', '.join(TORCH_SUFFIXES)}) file")


def _no_config(config, path: Path) -> None:
    if config is not None:
        raise ValueError(f"{path} carries its own config: pass a config only with a PyTorch checkpoint")
