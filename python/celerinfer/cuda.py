"""The CUDA backend's status: is it built, is there a driver and a GPU, and why not.

``celerinfer._cuda`` is a separate extension, built only when nvcc was found (CMake option
``CELER_CUDA=AUTO|ON|OFF``). Nothing here raises: a machine without the module, the driver or a
GPU is a normal case, and ``cuda_status()["reason"]`` says which (the CUDA tests skip with it).
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
from functools import lru_cache
from types import ModuleType
from typing import Any


@lru_cache(maxsize=1)
def _module() -> tuple[ModuleType | None, str]:
    """(celerinfer._cuda or None, why it is missing)."""
    try:
        return importlib.import_module("celerinfer._cuda"), ""
    except ModuleNotFoundError:
        return None, "built without CUDA (no nvcc at build time, or CELER_CUDA=OFF)"
    except ImportError as e:  # built, but cannot load here
        return None, f"celerinfer._cuda failed to load: {e}"


def cuda_module() -> ModuleType:
    """``celerinfer._cuda``, or RuntimeError saying why it is not there."""
    mod, why = _module()
    if mod is None:
        raise RuntimeError(f"CUDA backend unavailable: {why}")
    return mod


def cuda_status() -> dict[str, Any]:
    """What the CUDA backend can do on this machine, without raising.

    Keys: ``built`` (the _cuda module exists), ``available`` (a usable device), ``device_count``,
    ``reason`` ("" when available, else e.g. "built without CUDA ...", "no CUDA driver ...",
    "0 CUDA devices"), ``devices`` (name, compute_capability, total_memory / free_memory in
    bytes, ...), ``runtime_version`` and ``driver_version`` (e.g. 13000), ``cuda_architectures``
    and ``nvcc_version`` (how _cuda was compiled).
    """
    mod, why = _module()
    status: dict[str, Any] = {"built": mod is not None, "available": False, "device_count": 0, "reason": why,
                              "devices": [], "runtime_version": 0, "driver_version": 0,
                              "cuda_architectures": "", "nvcc_version": ""}
    if mod is None:
        return status
    try:
        status.update(mod.build_info())
        st = mod.status()
    except Exception as e:  # noqa: BLE001 - status must never raise
        status["reason"] = f"CUDA status query failed: {e}"
        return status
    status.update(st)
    status["available"] = st["device_count"] > 0
    return status


def cuda_device_count() -> int:
    """Number of usable CUDA devices: 0 without the _cuda module, a driver or a GPU. Never raises."""
    return int(cuda_status()["device_count"])


def cublas_candidates() -> list[str]:
    """Where to look for cuBLAS before the loader's search path: ``$CELER_CUBLAS`` (a file), then
    the ``nvidia/cublas/lib`` folder of an installed nvidia-cublas wheel (the one PyTorch's CUDA
    builds bring), newest soname first."""
    out = []
    if os.environ.get("CELER_CUBLAS"):
        out.append(os.environ["CELER_CUBLAS"])
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        found = glob.glob(os.path.join(root, "cublas", "lib", "libcublas.so*"))
        out.extend(sorted(found, reverse=True))
    return out


def load_cublas() -> str:
    """Loads cuBLAS into the _cuda module (see ``cublas_candidates``); returns its path.
    RuntimeError naming every place tried when there is none."""
    return cuda_module().load_cublas(cublas_candidates())


def device_unavailable_message(device: str) -> str:
    """Why ``Engine(device=device)`` cannot run here, for its ValueError."""
    if device != "cuda":
        return f"device {device!r} is not available: the devices are 'cpu' and 'cuda'"
    status = cuda_status()
    if not status["available"]:
        return f"device 'cuda' is not available: {status['reason']}"
    names = ", ".join(d["name"] for d in status["devices"])
    return ("device 'cuda' is not available: the CUDA engine is not written yet (the CUDA ops are, "
            f"in celerinfer._cuda; {status['device_count']} device(s): {names})")
