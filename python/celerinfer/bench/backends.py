"""The backends `celerinfer bench compare` times side by side, behind one small interface.

A runner is built for one setup (backend, weight format, KV cache) and answers
``run(prompt_ids, decode_tokens) -> (prefill_ns, [decode_ns, ...])``: one prefill of the prompt
(B = 1) including the first greedy token, then ``decode_tokens`` single-token steps, each a
forward pass plus its argmax. Every backend is timed the same way, from Python, around the
same work.

* ``celerinfer``: :class:`celerinfer.Engine` (its own per-step clocks).
* ``torch``: :class:`celerinfer.reference.torch_engine.TorchEngine`, eager fp32 with a KV cache.
* ``llama.cpp``: llama-cpp-python on a GGUF export of the same weights
  (:mod:`celerinfer.io.gguf`), n_batch = n_ubatch = 512.

:func:`unavailable` says why a backend cannot run here (a missing package), or None.
"""

from __future__ import annotations

import atexit
import time

import numpy as np

from ..engine import PHASES, Engine

BACKENDS = ("celerinfer", "torch", "llama.cpp")
#: llama.cpp's KV cache types (ggml_type codes) that the comparison uses
LLAMA_KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}
LLAMA_BATCH = 512


def unavailable(backend: str) -> str | None:
    """Why `backend` cannot run in this environment, or None when it can."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    needs = {"torch": ("torch", "pip install 'celerinfer[torch]'"),
             "llama.cpp": ("llama_cpp", "pip install 'celerinfer[compare]' (builds llama.cpp)")}
    if backend in needs:
        module, hint = needs[backend]
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} is not installed ({exc}): {hint}"
        if backend == "llama.cpp":
            try:
                __import__("gguf")
            except ImportError:
                return "gguf is not installed: pip install 'celerinfer[compare]'"
    return None


class CelerinferRunner:
    def __init__(self, model, version: str, weight_dtype: str, max_seq_len: int, matmul_precision: str = "highest"):
        self.engine = Engine(model, version, max_seq_len=max_seq_len, weight_dtype=weight_dtype,
                             matmul_precision=matmul_precision)

    def run(self, ids: np.ndarray, decode_tokens: int) -> tuple[int, list[int]]:
        steps = self.engine.generate(ids, decode_tokens + 1).step_table[:, len(PHASES)]  # step totals (ns)
        return int(steps[0]), [int(t) for t in steps[1:]]

    def close(self) -> None:
        self.engine = None


class TorchRunner:
    def __init__(self, model, threads: int, max_seq_len: int, dtype: str = "f32"):
        from ..reference.torch_engine import TorchEngine  # imports torch: only when asked for

        self.engine = TorchEngine(model, max_seq_len=max_seq_len, threads=threads, dtype=dtype)

    def run(self, ids: np.ndarray, decode_tokens: int) -> tuple[int, list[int]]:
        gen = self.engine.generate(ids, decode_tokens + 1)
        return gen.prefill_ns, gen.decode_ns

    def close(self) -> None:
        self.engine = None


def _import_llama():
    """llama_cpp.Llama. llama_cpp opens two /dev/null files at import and never closes them (a
    ResourceWarning at exit, an error message under warnings-as-errors): close them at exit."""
    from llama_cpp import Llama, _utils

    if not getattr(_import_llama, "registered", False):
        atexit.register(lambda: [f.close() for f in (_utils.outnull_file, _utils.errnull_file)])
        _import_llama.registered = True
    return Llama


class LlamaCppRunner:
    """llama-cpp-python on a GGUF file; kv: "f32", "f16" or "q8_0" (type_k = type_v);
    flash_attn is required by llama.cpp for a quantized V cache."""

    def __init__(self, gguf_path, kv: str, flash_attn: bool, threads: int, n_ctx: int, logits_all: bool = False):
        Llama = _import_llama()
        if kv not in LLAMA_KV_TYPES:
            raise ValueError(f"llama.cpp KV cache type must be one of {', '.join(LLAMA_KV_TYPES)}, got {kv!r}")
        self.llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=LLAMA_BATCH, n_ubatch=LLAMA_BATCH,
                         n_threads=threads, n_threads_batch=threads, type_k=LLAMA_KV_TYPES[kv],
                         type_v=LLAMA_KV_TYPES[kv], flash_attn=flash_attn, logits_all=logits_all,
                         n_gpu_layers=0, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def _next_token(self) -> int:
        from llama_cpp import llama_get_logits_ith

        logits = np.ctypeslib.as_array(llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        return int(np.argmax(logits))

    def logits(self, ids) -> np.ndarray:
        """(S, vocab) logits of every position of a fresh sequence (needs logits_all=True)."""
        self.llm.reset()
        self.llm.eval([int(t) for t in np.asarray(ids).reshape(-1)])
        return np.array(self.llm.scores[: self.llm.n_tokens], dtype=np.float32)

    def run(self, ids: np.ndarray, decode_tokens: int) -> tuple[int, list[int]]:
        prompt = [int(t) for t in np.asarray(ids).reshape(-1)]
        self.llm.reset()
        t0 = time.perf_counter_ns()
        self.llm.eval(prompt)
        token = self._next_token()
        prefill_ns = time.perf_counter_ns() - t0
        decode_ns = []
        for _ in range(decode_tokens):
            t0 = time.perf_counter_ns()
            self.llm.eval([token])
            token = self._next_token()
            decode_ns.append(time.perf_counter_ns() - t0)
        return prefill_ns, decode_ns

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
