"""Seed 002's flat fields on every benchmark record, beside the nested schema.

Seed 002 analyses ``results.jsonl`` with pandas, filtering ``df['benchmark_name'] ==
'latency_vs_T'`` and dividing ``time_total_ms_median`` columns; its records are flat. Ours keep
the nested schema (``metrics.total_ms.median``: every statistic, the raw samples) and carry the
seed's names too, computed from the nested values when the record is made, so that the seed's
snippet runs unchanged. The nested fields stay the source of truth (plots and comparisons read
those); these are a view, written once.
"""

from __future__ import annotations

import math

from .fields import finite_number, get, median_of

#: our benchmark name -> seed 002's ``benchmark_name``
SEED_BENCHMARK_NAMES = {"latency": "latency_vs_T", "memory": "vram_vs_T", "phase": "phase_timing",
                        "perplexity": "perplexity", "roofline": "roofline"}


def _std_of(stat) -> float | None:
    return finite_number(stat.get("std")) if isinstance(stat, dict) else None


def _model_config(model: dict | None, flags: dict | None) -> dict | None:
    """The model's shape in seed 002's (nanoGPT's) names, with the version's two cache flags."""
    config = get(model, "config")
    if not isinstance(config, dict):
        return None
    out = {"n_layer": config.get("num_hidden_layers"), "n_head": config.get("num_attention_heads"),
           "n_kv_head": config.get("num_key_value_heads"), "n_embd": config.get("hidden_size"),
           "block_size": config.get("max_position_embeddings"), "vocab_size": config.get("vocab_size")}
    if flags:
        out.update(kv_cache_quant=bool(flags.get("kv_quant")), cross_layer_sharing=bool(flags.get("cross_layer_sharing")))
    return out


def _metric_fields(benchmark: str, metrics: dict, params: dict) -> dict:
    """The seed's metric names for one benchmark's nested metrics."""
    out: dict = {}
    if benchmark == "latency":
        total, per_token = metrics.get("total_ms"), metrics.get("per_token_ms")
        T = finite_number(params.get("T"))
        out["time_total_ms_median"] = median_of(total)
        out["time_total_ms_std"] = _std_of(total)
        # seed 002: total / T (our per_token_ms is the decode steps' own time, TTFT apart)
        out["time_per_token_ms_median"] = (out["time_total_ms_median"] / T
                                           if out["time_total_ms_median"] is not None and T else None)
        out["time_decode_step_ms_median"] = median_of(per_token)
        out["ttft_ms_median"] = median_of(metrics.get("ttft_ms"))
        out["tokens_per_s"] = finite_number(metrics.get("tokens_per_s"))
    elif benchmark == "memory":
        engine = finite_number(metrics.get("engine_bytes"))
        weights = finite_number(metrics.get("packed_weight_bytes")) or finite_number(metrics.get("f32_weight_bytes"))
        # our engine's bytes are its buffers (KV cache included) beside the weights
        out["peak_memory_bytes"] = engine + weights if engine is not None and weights is not None else None
        out["peak_activation_bytes"] = engine
        out["baseline_memory_bytes"] = weights
        out["kv_cache_bytes"] = finite_number(metrics.get("kv_cache_bytes"))
    elif benchmark == "phase":
        phases = metrics.get("phases_ms")
        if isinstance(phases, dict):
            out["time_phase_ms"] = {**{name: median_of(stat) for name, stat in phases.items()},
                                    "total": median_of(metrics.get("total_ms"))}
    elif benchmark == "perplexity":
        out["perplexity"] = finite_number(metrics.get("perplexity"))
        out["loss"] = finite_number(metrics.get("loss"))
        diff = finite_number(metrics.get("nll_diff_vs_baseline"))  # loss - the baseline's loss
        # % change of perplexity from the baseline's: exp(loss) / exp(loss - diff) - 1
        out["degradation"] = 100.0 * math.expm1(diff) if diff is not None else None
    return out


def seed_fields(benchmark: str, version_flags: dict | None, model: dict | None, params: dict,
                metrics: dict) -> dict:
    """Seed 002's flat fields of one record (see the module's docstring)."""
    flags = version_flags or {}
    out = {
        "benchmark_name": SEED_BENCHMARK_NAMES.get(benchmark, benchmark),
        "implementation_name": "celerinfer",
        # a model loaded from a file or a package; None for random weights (a preset, model_config)
        "pretrained": get(model, "name") if model and model.get("seed") is None else None,
        "model_config": _model_config(model, version_flags),
        "prompt_length": params.get("prompt_length"),
        "batch_size": params.get("batch_size"),
        "seed": params.get("seed"),
        "version_description": flags.get("description"),
        "use_cache": flags.get("use_cache"),
        "kv_cache_quant": bool(flags.get("kv_quant")) if flags else None,
        "cross_layer_sharing": bool(flags.get("cross_layer_sharing")) if flags else None,
        "T": params.get("T"),
    }
    out.update(_metric_fields(benchmark, metrics, params))
    return out
