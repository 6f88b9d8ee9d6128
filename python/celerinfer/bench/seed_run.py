"""The measuring part of the run mode (``celerinfer run``, seed 001): a prompt generated through
an engine sized for it and timed end to end, as the seed's run object, and the pair of one
benchmark: the non-optimized engine (v0, no KV cache) and an optimized version on the same
prompt, seed and sampling settings.

Metrics of one run: total_time is the wall-clock time of ``Engine.generate`` (prefill plus
all new tokens), tokens_per_second = generated_length / total_time, time_per_token =
1000 * total_time / generated_length (ms); memory_used_mb is the engine's own buffers
(activations, scratch and the KV cache: ``Generation.peak_bytes``) in MB of 2**20 bytes;
peak_rss_mb is the process's peak resident memory so far. On the optimized run, speedup =
optimized tokens/s / non-optimized tokens/s and memory_reduction_pct =
100 * (1 - optimized memory / non-optimized memory).
"""

from __future__ import annotations

import getpass
import platform
import time
import uuid
from dataclasses import dataclass

from ..engine import Engine, Generation
from ..generate_options import GenerateOptions
from ..model import Model
from ..results.fields import finite_number
from ..results.inference_metrics import run_record

MB = 2**20


@dataclass
class RunContext:
    """What every run of one invocation shares: the model, its tokenizer, what the records say
    about them (model_info: path, config, threads, package_version), the device, the asked
    --max-length and the sampling settings."""

    model: Model
    tokenizer: object
    model_info: dict
    device: str
    max_length: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    eos_token_id: int | None = None  # where generation stops (a chat model's end of turn)

    def options(self, max_new_tokens: int) -> GenerateOptions:
        return GenerateOptions(max_new_tokens, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                               seed=self.seed, eos_token_id=self.eos_token_id)


@dataclass
class Prompt:
    """One prompt: its text (None for --prompt-ids) and token ids (with chat, of the whole
    templated conversation: `text` is then the user's message)."""

    text: str | None
    ids: list[int]
    chat: bool = False


def sized_engine(ctx: RunContext, version: str, seq_len: int) -> Engine:
    """An engine sized for exactly this prompt plus its new tokens, so the memory of every
    version is measured for the same sequence (not for the model's longest one)."""
    return Engine(ctx.model, version, device=ctx.device, max_seq_len=seq_len)


def generate_timed(engine: Engine, ids: list[int], options: GenerateOptions, on_token=None) -> tuple[Generation, float]:
    start = time.perf_counter()
    gen = engine.generate([ids], options, on_token=on_token)
    return gen, time.perf_counter() - start


def text_of(tokenizer, ids) -> str | None:
    """The text of token ids, or None when the tokenizer cannot show them (small vocabularies)."""
    if getattr(tokenizer, "covers_bytes", True):
        return tokenizer.decode(ids)
    return None


def new_pair_id() -> str:
    """``run_<unix time>_<short uuid>``: the id the two runs of one benchmark share."""
    return f"run_{int(time.time())}_{uuid.uuid4().hex[:8]}"


def step_table_rows(gen: Generation, wall_ns: list[int], engine: Engine, prompt_length: int, pieces: list[str] | None) -> list[dict]:
    """The run's step table, one row per generated token (seed 004's per-step CSV is a view of
    it, results/step_csv.py): step (0: the prefill and the first token), engine_ms (the
    engine's own time for the step, from its step table), wall_ms (between consecutive tokens
    at the caller: sampling, streaming and Python included), the token id and its text, and the
    bytes the step reads (weights; weights plus KV cache, the roofline model's count)."""
    from . import roofline

    config, version = engine.model.config, engine.version
    formats = engine.matrix_formats or {"f32": 1}
    compute = max(formats, key=formats.get)
    ids = [int(t) for t in gen.new_tokens[0]]
    rows = []
    for i, token in enumerate(ids):
        # step i >= 1 attends over prompt_length + i - 1 cached positions (as the roofline benchmark)
        cost = (roofline.prefill_cost(config, version, 1, prompt_length, weight_dtype=compute) if i == 0 else
                roofline.decode_cost(config, version, 1, prompt_length + i - 1, weight_dtype=compute))
        rows.append({"step": i, "engine_ms": float(gen.step_table[i, 5]) / 1e6 if i < len(gen.step_table) else None,
                     "wall_ms": wall_ns[i] / 1e6 if i < len(wall_ns) else None, "token_id": token,
                     "token_text": pieces[i] if pieces is not None else None,
                     "weight_bytes": engine.packed_weight_bytes, "bytes_read": cost.bytes - cost.weight_bytes
                     + engine.packed_weight_bytes})
    return rows


def measure(ctx: RunContext, engine: Engine, prompt: Prompt, max_new_tokens: int, *, optimized: bool, pair_id: str,
            warmup: int) -> tuple[dict, Generation]:
    """One benchmark run: `warmup` untimed generations, then a timed one; its run object.

    The run is named ``run_<unix time>_<optimized|baseline>_<short uuid>`` after its pair_id."""
    options = ctx.options(max_new_tokens)
    for _ in range(warmup):
        generate_timed(engine, prompt.ids, options)
    stamps = [time.perf_counter_ns()]
    gen, seconds = generate_timed(engine, prompt.ids, options, on_token=lambda _: stamps.append(time.perf_counter_ns()))
    new_ids = [int(t) for t in gen.new_tokens[0]]
    pieces = [text_of(ctx.tokenizer, [t]) for t in new_ids] if text_of(ctx.tokenizer, []) is not None else None
    generated = len(new_ids)
    _, stamp, short = pair_id.split("_", 2)
    run = {
        "run_name": f"run_{stamp}_{'optimized' if optimized else 'baseline'}_{short}",
        "timestamp": time.time(),
        "optimized": optimized,
        "prompt_length": len(prompt.ids),
        "generated_length": generated,
        "total_time": seconds,
        "tokens_per_second": generated / seconds if seconds > 0 else None,
        "time_per_token": 1e3 * seconds / generated if generated else None,
        "memory_used_mb": gen.peak_bytes / MB,
        "device": ctx.device,
        "pair_id": pair_id,
        "version": engine.version["name"],
        "version_description": engine.version["description"],
        "prompt": prompt.text if prompt.text is not None else list(prompt.ids),
        "prompt_ids": list(prompt.ids),
        "generated_text": text_of(ctx.tokenizer, new_ids),
        "generated_ids": new_ids,
        "peak_rss_mb": gen.peak_rss_bytes / MB,
        "max_seq_len": engine.max_seq_len,
        "kv_cache_mb": gen.kv_cache_bytes / MB,
        "ttft_ms": gen.timings["ttft_ms"],
        "engine_decode_tokens_per_s": gen.timings["decode_tokens_per_s"],
        "model": ctx.model_info["path"],
        "model_config": ctx.model_info["config"],
        "tokenizer": getattr(ctx.tokenizer, "name", type(ctx.tokenizer).__name__),
        "sampling": {"max_length": ctx.max_length, "max_new_tokens": max_new_tokens,
                     "temperature": ctx.temperature, "top_k": ctx.top_k, "top_p": ctx.top_p, "seed": ctx.seed},
        "threads": ctx.model_info["threads"],
        "warmup_runs": warmup,
        "celerinfer_version": ctx.model_info["package_version"],
        "weight_dtype": engine.weight_dtype,
        "platform": platform.system(),
        "release": platform.release(),
        "username": _username(),
        "steps": step_table_rows(gen, [b - a for a, b in zip(stamps, stamps[1:])], engine, len(prompt.ids), pieces),
    }
    return run, gen


def _username() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return None


def add_speedup(baseline: dict, optimized: dict) -> None:
    """Put speedup, memory_reduction_pct and same_tokens_as_baseline on the optimized run."""
    base_tps = finite_number(baseline.get("tokens_per_second"))
    opt_tps = finite_number(optimized.get("tokens_per_second"))
    base_mem, opt_mem = finite_number(baseline.get("memory_used_mb")), finite_number(optimized.get("memory_used_mb"))
    optimized["speedup"] = opt_tps / base_tps if base_tps and opt_tps is not None else None
    optimized["memory_reduction_pct"] = 100.0 * (1.0 - opt_mem / base_mem) if base_mem and opt_mem is not None else None
    optimized["baseline_run_name"] = baseline["run_name"]
    optimized["same_tokens_as_baseline"] = baseline.get("generated_ids") == optimized.get("generated_ids")


def record_of(ctx: RunContext, run: dict, engine: Engine) -> dict:
    """The store's record of a measured run: the run, its version's flags, the model, the
    engine's packed weight bytes."""
    num_parameters = ctx.model.config.num_parameters
    model = {"name": ctx.model_info["path"], "config": ctx.model_info["config"], "num_parameters": num_parameters,
             "f32_weight_bytes": 4 * num_parameters, "weight_dtype": engine.weight_dtype}
    return run_record(run, engine.version, model, ctx.model_info["threads"],
                      packed_weight_bytes=engine.packed_weight_bytes)
