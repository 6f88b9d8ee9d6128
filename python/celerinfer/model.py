"""Model: the user-facing handle on a model's config and weights (C++ underneath)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import _core
from .arguments import integer

ModelConfig = _core.ModelConfig
FormatError = _core.FormatError

#: ModelConfig field names, in constructor order (the Hugging Face names).
CONFIG_FIELDS = (
    "architecture",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "intermediate_size",
    "rms_norm_eps",
    "rope_theta",
    "tie_word_embeddings",
    "hidden_act",
    "layer_norm_epsilon",
)

def config_to_dict(config: ModelConfig) -> dict:
    """The config as a plain dict (Hugging Face key names)."""
    return {name: getattr(config, name) for name in CONFIG_FIELDS}


def config_from_dict(values: dict) -> ModelConfig:
    """A ModelConfig from a dict; keys that are not config fields are ignored."""
    return ModelConfig(**{k: v for k, v in values.items() if k in CONFIG_FIELDS})


def as_token_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == np.bool_ and name == "attention_mask":
        return array.astype(np.int32)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.ndim == 1:  # one sequence
        array = array[None, :]
    if array.dtype not in (np.int32, np.int64):
        array = array.astype(np.int64)
    return np.ascontiguousarray(array)


class Model:
    """A model's config and weights, held by the C++ engine: float32, or (from a GGUF file) the
    file's own quantized blocks, memory-mapped.

    Create one with :func:`celerinfer.random_model` or :func:`celerinfer.load`
    (:mod:`celerinfer.io.model_files`). `gguf_metadata`: a GGUF file's metadata (tokenizer,
    chat template, ...); `source`: the file or folder it came from.
    """

    def __init__(self, impl: _core.Model, gguf_metadata=None, source: str | os.PathLike | None = None):
        self._impl = impl
        self._gguf_metadata = gguf_metadata
        self.source = None if source is None else Path(source)
        self._tokenizer = None

    @property
    def gguf_metadata(self):
        """The GGUF file's metadata (a mapping; ``type_of(key)`` names a value's GGUF type), or None."""
        return self._gguf_metadata

    @property
    def weight_dtypes(self) -> dict[str, str]:
        """Tensor name -> the dtype the model stores it in ("float32", "q4_1", "q8_0", ...)."""
        return dict(self._impl.weight_dtypes)

    @property
    def tokenizer(self):
        """The model's tokenizer: its GGUF file's (``encode``, ``decode``, ``apply_chat_template``,
        ``stop_token_id``), else the tokenizer.json beside its file, else byte-level (random
        models). Built on first use."""
        if self._tokenizer is None:
            from .io.tokenizer import model_tokenizer

            self._tokenizer = model_tokenizer(self._gguf_metadata, self.source, self.config.vocab_size)
        return self._tokenizer

    @property
    def config(self) -> ModelConfig:
        return self._impl.config

    @property
    def inputs(self) -> dict | None:
        """The example inputs a seed file carried: {'input_ids', 'attention_mask'} or None."""
        ids = self._impl.input_ids
        if ids is None:
            return None
        mask = self._impl.attention_mask
        return {"input_ids": ids, "attention_mask": mask if mask is not None else np.ones_like(ids)}

    def set_inputs(self, input_ids, attention_mask=None) -> None:
        """Attach example inputs (saved with the model in the seed JSON format)."""
        ids = as_token_array(input_ids, "input_ids")
        mask = None if attention_mask is None else as_token_array(attention_mask, "attention_mask")
        self._impl.set_inputs(ids, mask)

    @property
    def rope(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The RoPE (cos, sin) tables a file carried, each (max_pos, head_dim); None: computed."""
        return self._impl.rope

    def state_dict(self) -> dict[str, np.ndarray]:
        """Tensor name -> read-only float32 array of the weight in the engine's layout: Hugging
        Face Llama / Qwen2 names, linear weights (out, in); a view (no copy) where the model holds
        the weight so, else an exact dequantized copy (a GGUF model's blocks; a llama GGUF file's
        q/k rows come back in rotate-half order). For gpt2 the same names and layout (separate
        q/k/v); :meth:`hf_state_dict` gives GPT-2's own."""
        return self._impl.state_dict()

    def hf_state_dict(self) -> dict[str, np.ndarray]:
        """The weights as a Hugging Face checkpoint holds them (what :meth:`save` writes to a
        folder): llama/qwen2 the same views as state_dict(); gpt2 fused, transposed copies."""
        return self._impl.hf_state_dict()

    def forward(self, input_ids, attention_mask=None) -> np.ndarray:
        """Logits (B, S, vocab) float32 for token ids (B, S) (or (S,)) and an optional 0/1 mask.

        Positions are 0..S-1 in every row; query i attends to keys j <= i whose mask is 1.
        Logits at padded query positions are unspecified.
        """
        ids = as_token_array(input_ids, "input_ids")
        mask = None if attention_mask is None else as_token_array(attention_mask, "attention_mask")
        return self._impl.forward(ids, mask)

    def save(self, path: str | os.PathLike, weight_dtype: str = "stored") -> list[Path]:
        """Write the model; the format follows the path: a .json file (seed format, llama
        only), a .safetensors file, a .gguf file (llama.cpp's; `weight_dtype` for its matrices:
        "stored", "f32", "f16", "q8_0", "q4_0", "q4_1"), or a folder (a path without suffix, or
        an existing folder): a Hugging Face checkpoint, config.json and model.safetensors, that
        ``transformers.AutoModelForCausalLM.from_pretrained`` loads. The float formats hold a
        quantized model's exact dequantized values.

        All or nothing: everything is written in full before anything is replaced, so a failed
        save leaves what was there. Saving into a folder that holds another checkpoint replaces
        it whole (a sharded index and its shards included). Returns the paths it replaced or
        removed ([] when it replaced nothing)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".gguf":
            from .io.gguf import export_gguf

            replaced = [path] if path.exists() else []
            export_gguf(self, path, weight_dtype)
            return replaced
        if weight_dtype != "stored":
            raise ValueError(f"weight_dtype applies to .gguf files only (got {weight_dtype!r} for {path})")
        if path.is_dir() or not suffix:
            from .io.folder_save import save_folder

            return save_folder(self._impl.save_hf_folder, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        replaced = [path] if path.exists() else []
        if suffix == ".json":
            self._impl.save_seed_json(str(path))
        elif suffix == ".safetensors":
            self._impl.save_safetensors(str(path))
        else:
            raise ValueError(f"cannot tell the format of {path}: use a .json, .safetensors or .gguf suffix, "
                             "or a folder path without suffix")
        return replaced

    def __repr__(self) -> str:
        return f"Model({self.config!r})"


def random_model(config: ModelConfig | None = None, seed: int = 0, **config_fields) -> Model:
    """A deterministic random model: the same config and seed give the same bytes everywhere.

    Pass a ModelConfig, or its fields as keywords (``random_model(hidden_size=64, ...)``).
    """
    if config is None:
        config = ModelConfig(**config_fields)
    elif config_fields:
        raise TypeError("pass either a ModelConfig or config fields, not both")
    return Model(_core.random_model(config, integer("seed", seed, 0, 2**64)))


def random_tokens(batch: int, seq_len: int, vocab_size: int, seed: int = 0) -> np.ndarray:
    """Deterministic random token ids in [0, vocab_size), int32 (batch, seq_len)."""
    return _core.random_tokens(integer("batch", batch, 1), integer("seq_len", seq_len, 1),
                               integer("vocab_size", vocab_size, 1), integer("seed", seed, 0, 2**64))
