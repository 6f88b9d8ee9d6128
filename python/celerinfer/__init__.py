"""celerinfer: a C++ LLM inference engine for studying KV-cache strategies, with a PyTorch
reference implementation (``celerinfer.reference``) for parity checks."""

from importlib.metadata import PackageNotFoundError, version as _version

from . import _core
from ._core import get_num_threads, set_num_threads, set_simd_level, simd_level, simd_levels
from .arrays import compare_arrays, load_npy, save_npy
from .checkpoint import load_checkpoint
from .cuda import cuda_device_count, cuda_status
from .engine import MATMUL_PRECISIONS, WEIGHT_DTYPES, Engine, Generation, versions
from .model import FormatError, Model, ModelConfig, load, random_model, random_tokens
from .model_presets import MODEL_PRESETS, preset_config
from .tokenizer import load_tokenizer

try:
    __version__ = _version("celerinfer")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "MATMUL_PRECISIONS",
    "WEIGHT_DTYPES",
    "Engine",
    "FormatError",
    "Generation",
    "MODEL_PRESETS",
    "Model",
    "ModelConfig",
    "compare_arrays",
    "cuda_device_count",
    "cuda_status",
    "get_num_threads",
    "load",
    "load_checkpoint",
    "load_npy",
    "load_tokenizer",
    "preset_config",
    "random_model",
    "random_tokens",
    "save_npy",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
    "simd_levels",
    "versions",
]
