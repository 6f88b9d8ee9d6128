"""celerinfer: a C++ LLM inference engine for studying KV-cache strategies, with a PyTorch
reference implementation (``celerinfer.reference``) for parity checks.

This module is the public API; each name comes from the module that defines it (the layout:
``docs/design.md``). Modules inside the package import those modules,
never this one.
"""

from . import _core
from .array_comparison import compare_arrays
from .cuda import cuda_device_count, cuda_status
from .engine import MATMUL_PRECISIONS, WEIGHT_DTYPES, Engine, Generation
from .generate_options import GenerateOptions
from .io.checkpoint import load_checkpoint
from .io.model_files import load
from .io.npy import load_npy, save_npy
from .io.tokenizer import load_tokenizer
from .model import FormatError, Model, ModelConfig, random_model, random_tokens
from .model_presets import MODEL_PRESETS, preset_config
from .package_info import distribution_version as _distribution_version
from .registry import versions
from .runtime import get_num_threads, set_num_threads, set_simd_level, simd_level, simd_levels

__version__ = _distribution_version("celerinfer") or "0.0.0+unknown"  # unknown: a source tree

__all__ = [
    "MATMUL_PRECISIONS",
    "WEIGHT_DTYPES",
    "Engine",
    "FormatError",
    "GenerateOptions",
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
