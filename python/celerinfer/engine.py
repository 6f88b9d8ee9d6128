"""Engine: generation with a KV-cache version (see :func:`versions`), sampling and timers."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from . import _core
from .cuda import device_unavailable_message
from .formats import FORMAT_NAMES
from .generate_options import GenerateOptions
from .model import Model, as_token_array
from .runtime import set_num_threads

PHASES = tuple(_core.phase_names())  # embedding, attention, mlp, head, other
#: Weight formats the linear layers can compute with (Engine's weight_dtype): the C++ table's.
WEIGHT_DTYPES = FORMAT_NAMES  # the C++ table: f32, bf16, int8, q4_0, q4_1
#: How prefill's matrix products may multiply f32 and int8 weights (Engine's matmul_precision),
#: named after torch.set_float32_matmul_precision: "highest" is float32 products; "high" splits
#: every value into a bfloat16 and a bfloat16 residual and sums three bf16 products (bf16x3) on
#: AMX tiles, ~2.4x faster there and within ~1e-5 of each exact product (float32: ~6e-8); on a
#: CPU without AMX "high" computes as "highest". Decoding and bf16 weights are the same at both.
MATMUL_PRECISIONS = tuple(_core.matmul_precisions())  # ("highest", "high")


def precision_changes_prefill(weight_dtype: str) -> bool:
    """Whether matmul precision "high" changes how prefill multiplies `weight_dtype` weights on
    this CPU at the current SIMD level (bf16x3 on AMX: f32 and int8 where the CPU has AMX)."""
    return _core.prefill_gemm(weight_dtype, "high") != _core.prefill_gemm(weight_dtype, "highest")


@dataclass
class Generation:
    """What :meth:`Engine.generate` returns.

    tokens: (B, P + T) int64, the prompt then the T new tokens (T < max_new_tokens when every
    row reached eos_token_id). logits: (B, T, vocab) float32, the raw model logits each step
    sampled from (before penalty / temperature / top-k / top-p), or None. timings: see
    :func:`timings_from_steps`. kv_cache_bytes: the cache's bytes for the tokens it holds
    (scales included; 0 for v0); kv_cache_capacity_bytes: allocated; peak_bytes: the engine's
    own buffers (activations, scratch and cache, all allocated before the decode loop);
    peak_rss_bytes: this process's peak resident memory so far.
    """

    tokens: np.ndarray
    logits: np.ndarray | None
    timings: dict
    kv_cache_bytes: int
    kv_cache_capacity_bytes: int
    peak_bytes: int
    peak_rss_bytes: int
    prompt_length: int
    version: str
    step_table: np.ndarray = field(repr=False)

    @property
    def new_tokens(self) -> np.ndarray:
        """(B, T) the generated tokens alone."""
        return self.tokens[:, self.prompt_length :]


def timings_from_steps(steps: np.ndarray) -> dict:
    """Per-phase and per-token timings in milliseconds from the engine's step table.

    Step 0 is the prefill plus the first sampled token (its total is the time to first token);
    each later step is one decode token. Keys: ttft_ms, per_token_ms (decode steps), total_ms,
    phases_ms {phase: summed ms}, steps_ms {phase: per-step list, plus 'total'}, and
    decode_tokens_per_s (per row).
    """
    steps = np.asarray(steps, dtype=np.int64)
    ms = steps[:, : len(PHASES) + 1].astype(np.float64) / 1e6
    total = ms[:, len(PHASES)]
    decode = total[1:]
    return {
        "ttft_ms": float(total[0]) if len(total) else 0.0,
        "per_token_ms": decode.tolist(),
        "total_ms": float(total.sum()),
        "phases_ms": {name: float(ms[:, i].sum()) for i, name in enumerate(PHASES)},
        "steps_ms": {**{name: ms[:, i].tolist() for i, name in enumerate(PHASES)}, "total": total.tolist()},
        "decode_tokens_per_s": float(len(decode) / (decode.sum() / 1e3)) if decode.sum() > 0 else 0.0,
    }


class Engine:
    """Generates tokens from a model under one KV-cache version.

    Engine(model, version="v1", device="cpu", threads=None, max_seq_len=None, weight_dtype=None,
    matmul_precision="highest"):
    version is a name from :func:`versions`, or a dict of KV-cache settings (the keys
    ``versions()`` entries have, from a ``base`` version: ``{"base": "v7", "residual": 64}``);
    threads sets the process-wide engine thread count (None: keep it); max_seq_len bounds prompt
    + new tokens (None: the model's max_position_embeddings) and sizes the cache; weight_dtype is
    the format the linear layers compute with (:data:`WEIGHT_DTYPES`). None computes each matrix
    in the format of the values the model stores (float32 models: "f32"; a GGUF file's Q4_0,
    Q4_1 and Q8_0 matrices as "q4_0", "q4_1" and "int8", exactly; its Q4_K / Q6_K ones in f32,
    dequantized exactly). A named format converts every matrix: "f32" exact values, "bf16"
    rounds them and the layers' inputs to bfloat16 (products summed in float32, like llama.cpp's
    BF16 type), "int8" weight-only symmetric blocks of 32 with an fp16 scale (llama.cpp's Q8_0
    values), "q4_0" / "q4_1" llama.cpp's 4-bit blocks; activations and accumulation stay float32.
    matmul_precision (:data:`MATMUL_PRECISIONS`, settable later) is how prefill multiplies f32 and
    int8 weights: "highest" in float32, "high" as bf16x3 where the CPU has AMX.
    Buffers are sized before the decode loop; nothing is allocated per token. One Engine is not
    for use from several threads at once.
    """

    def __init__(self, model: Model, version: str = "v1", device: str = "cpu", threads: int | None = None,
                 max_seq_len: int | None = None, weight_dtype: str | None = None,
                 matmul_precision: str = "highest"):
        if not isinstance(model, Model):
            raise TypeError(f"model must be a celerinfer.Model, got {type(model).__name__}")
        if device != "cpu":
            raise ValueError(device_unavailable_message(device))
        if threads is not None:
            set_num_threads(threads)
        self.model = model
        self.device = device
        if weight_dtype is not None and weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight_dtype must be one of {', '.join(WEIGHT_DTYPES)} (or None: as stored), "
                             f"got {weight_dtype!r}")
        if not isinstance(version, (str, dict)):
            raise TypeError(f"version must be a name or a dict of settings, got {type(version).__name__}")
        if max_seq_len is not None and (isinstance(max_seq_len, bool) or not isinstance(max_seq_len, numbers.Integral)
                                        or max_seq_len < 1):
            raise ValueError(f"max_seq_len must be an integer >= 1 (or None: the model's), got {max_seq_len!r}")
        self._impl = _core.Engine(model._impl, version, 0 if max_seq_len is None else int(max_seq_len),
                                  "stored" if weight_dtype is None else weight_dtype, device)
        self.matmul_precision = matmul_precision

    @property
    def version(self) -> dict:
        return self._impl.version

    @property
    def max_seq_len(self) -> int:
        return self._impl.max_seq_len

    @property
    def weight_dtype(self) -> str:
        """The format the layers compute with: the one asked for, else the format of most of the
        layers' matrices (a GGUF file's own type, as llama.cpp names a file)."""
        return self._impl.weight_dtype

    @property
    def matrix_formats(self) -> dict[str, int]:
        """Weight format -> how many matrices (the output head included) compute in it."""
        return dict(self._impl.matrix_formats)

    @property
    def matmul_precision(self) -> str:
        """How prefill multiplies f32 and int8 weights (:data:`MATMUL_PRECISIONS`)."""
        return self._impl.matmul_precision

    @matmul_precision.setter
    def matmul_precision(self, value: str) -> None:
        if value not in MATMUL_PRECISIONS:
            raise ValueError(f"matmul_precision must be one of {', '.join(MATMUL_PRECISIONS)}, got {value!r}")
        self._impl.matmul_precision = value

    @property
    def prefill_gemm(self) -> str:
        """The kernel prefill's matrix products run on now (e.g. avx512-fma, amx-bf16, amx-bf16x3)."""
        return _core.prefill_gemm(self.weight_dtype, self.matmul_precision)

    @property
    def decode_gemv(self) -> str:
        """The kernel decoding's matrix-vector products run on now (e.g. avx2, avx512, avx512-vdpbf16ps)."""
        return _core.decode_gemv(self.weight_dtype)

    @property
    def kernels(self) -> dict:
        """Which kernels run now: {simd_level, prefill_gemm, decode_gemv} (benchmark records keep it)."""
        return {"simd_level": _core.simd_level(), "prefill_gemm": self.prefill_gemm, "decode_gemv": self.decode_gemv}

    @property
    def packed_weight_bytes(self) -> int:
        """Bytes of the packed weights one decode step reads: every linear layer and the output
        head in the engine's weight format, scales included."""
        return self._impl.packed_weight_bytes

    def generate(self, input_ids, options: GenerateOptions | int | None = None, *, attention_mask=None,
                 on_token=None, **fields) -> Generation:
        """Prefill the prompt (B, P) (or (P,)), then decode up to max_new_tokens tokens.

        options: a :class:`GenerateOptions`; or its fields as keywords (``generate(ids,
        max_new_tokens=8, temperature=0.8)``), the first of them, max_new_tokens, also as the
        second argument (``generate(ids, 8, seed=1)``). An options object and fields together
        are a TypeError. temperature 0 is greedy (argmax; ties to the lowest id). Sampling
        order: repetition penalty, temperature, top-k, top-p; seeded per row, so the same seed
        gives the same tokens. attention_mask (B, P) of 0/1 marks padding (left or right;
        positions are not shifted). A row that emits eos_token_id keeps emitting it;
        generation stops when all rows have. timing=False skips the per-phase clocks.
        on_token(next_ids): called after each step with the (B,) tokens just taken (streaming);
        an exception it raises stops the generation and propagates. Ctrl-C stops it between
        steps (KeyboardInterrupt).
        """
        options = GenerateOptions.of(options, fields)
        ids = as_token_array(input_ids, "input_ids")
        mask = None if attention_mask is None else as_token_array(attention_mask, "attention_mask")
        if on_token is not None and not callable(on_token):
            raise TypeError(f"on_token must be callable, got {type(on_token).__name__}")
        result = self._impl.generate(ids, mask, options.to_core(), on_token)
        steps = result.steps
        return Generation(tokens=result.tokens, logits=result.logits, timings=timings_from_steps(steps),
                          kv_cache_bytes=result.kv_cache_bytes, kv_cache_capacity_bytes=result.kv_cache_capacity_bytes,
                          peak_bytes=result.peak_bytes, peak_rss_bytes=_core.peak_rss_bytes(),
                          prompt_length=result.prompt_length, version=self.version["name"], step_table=steps)

    def forward(self, input_ids, attention_mask=None) -> np.ndarray:
        """Logits (B, S, vocab) for every position in one prefill through this version's cache."""
        ids = as_token_array(input_ids, "input_ids")
        mask = None if attention_mask is None else as_token_array(attention_mask, "attention_mask")
        return self._impl.forward(ids, mask)

    def score(self, input_ids, attention_mask=None, prefill_length: int = 1) -> np.ndarray:
        """Teacher-forced logits (B, S, vocab) through this version's own cache path.

        Tokens [0, prefill_length) are prefilled; every later token is fed as one decode step,
        so an INT8 or shared cache shapes the logits exactly as in generation. [:, t] predicts
        token t + 1. v0 has no cache: its logits are the forward pass's.
        """
        ids = as_token_array(input_ids, "input_ids")
        mask = None if attention_mask is None else as_token_array(attention_mask, "attention_mask")
        return self._impl.score(ids, mask, int(prefill_length))

    def __repr__(self) -> str:
        return (f"Engine(version={self.version['name']!r}, device={self.device!r}, "
                f"weight_dtype={self.weight_dtype!r}, matmul_precision={self.matmul_precision!r}, "
                f"max_seq_len={self.max_seq_len})")
