"""Loading a model file: the format follows the path (a seed JSON file, safetensors, a Hugging
Face folder, a PyTorch checkpoint, a GGUF file), or the name of a packaged model (``smollm2``). Kept apart from :mod:`celerinfer.model` so that the model
does not depend on the PyTorch importer (which itself builds Models)."""

from __future__ import annotations

import os
from pathlib import Path

from .. import _core
from ..model import Model
from .checkpoint import load_checkpoint
from .packaged_models import PACKAGED_MODELS, packaged_model_path

#: Suffixes of PyTorch checkpoint files (a state_dict loaded with torch.load(weights_only=True)).
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A model path as given, or the file of a packaged model's name (``smollm2``)."""
    if isinstance(path, str) and path in PACKAGED_MODELS and not Path(path).exists():
        return packaged_model_path(path)
    return Path(path)


def load(path: str | os.PathLike, config=None) -> Model:
    """Load a model: a packaged model's name (``"smollm2"``: see
    :data:`celerinfer.io.packaged_models.PACKAGED_MODELS`), a GGUF file (.gguf: llama and qwen2,
    its matrices memory-mapped in their stored types, its tokenizer and chat template kept), a
    seed JSON file (.json), a .safetensors file, a Hugging Face checkpoint folder (config.json
    and model.safetensors, or shards with model.safetensors.index.json; memory-mapped) or its
    index file, or a PyTorch checkpoint (.pt, .pth, .ckpt; see :func:`celerinfer.load_checkpoint`,
    which `config` is passed to)."""
    path = resolve_model_path(path)
    if not path.exists():
        names = ", ".join(PACKAGED_MODELS)
        raise FileNotFoundError(f"no such model file or folder: {path} (packaged models: {names})")
    name = path.name.lower()
    if name.endswith(".gguf") and not path.is_dir():
        _no_config(config, path)
        impl, metadata = _core.load_gguf(str(path))
        return Model(impl, gguf_metadata=metadata, source=path)
    if path.is_dir() or name.endswith(".safetensors") or name.endswith(".safetensors.index.json"):
        _no_config(config, path)
        return Model(_core.load_safetensors(str(path)), source=path)
    if name.endswith(TORCH_SUFFIXES):
        return load_checkpoint(path, config)
    if name.endswith(".json"):
        _no_config(config, path)
        return Model(_core.load_seed_json(str(path)), source=path)
    raise ValueError(f"cannot tell the format of {path}: expected a folder, a .gguf, .json (seed format), "
                     f".safetensors or PyTorch ({', '.join(TORCH_SUFFIXES)}) file")


def _no_config(config, path: Path) -> None:
    if config is not None:
        raise ValueError(f"{path} carries its own config: pass a config only with a PyTorch checkpoint")
