"""The `celerinfer` command line. Each subcommand is one function taking parsed arguments."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from .cli_bench import add_parsers as add_bench_parsers
from .engine import MATMUL_PRECISIONS, WEIGHT_DTYPES
from .run_mode import add_parser as add_run_parser


def _env_default(name: str, fallback):
    return os.environ.get(name, fallback)


def cmd_random_model(args) -> int:
    from .model import ModelConfig, random_model, random_tokens

    config = ModelConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kvh,
        vocab_size=args.vocab,
        max_position_embeddings=args.max_pos,
        intermediate_size=args.inter,
        rms_norm_eps=args.rms_norm_eps,
        rope_theta=args.rope_theta,
        tie_word_embeddings=args.tie_embeddings,
    )
    if args.seq_len > config.max_position_embeddings:
        raise ValueError(f"--seq-len {args.seq_len} exceeds --max-pos {config.max_position_embeddings}")
    model = random_model(config, seed=args.seed)
    ids = random_tokens(args.batch_size, args.seq_len, config.vocab_size, seed=args.seed)
    model.set_inputs(ids, np.ones_like(ids))
    model.save(args.output)
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({size / 2**20:.1f} MiB)")
    print(f"  {config}")
    print(f"  parameters: {config.num_parameters:,}; inputs: input_ids {ids.shape}")
    return 0


def _forward_inputs(model, args):
    if model.inputs is not None and args.seq_len is None:
        return model.inputs["input_ids"], model.inputs["attention_mask"]
    from .model import random_tokens

    seq_len = args.seq_len or 8
    ids = random_tokens(args.batch_size, seq_len, model.config.vocab_size, seed=args.seed)
    return ids, np.ones_like(ids)


def cmd_forward(args) -> int:
    from .arrays import save_npy
    from .model import load

    model = load(args.model)
    ids, mask = _forward_inputs(model, args)
    if args.backend == "torch":
        from . import reference

        net = reference.ReferenceModel.from_model(model)
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        ids_t, mask_t = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))

        def run():
            with torch.no_grad():
                return net(ids_t, mask_t).numpy()

    else:
        from . import set_num_threads

        if args.threads:
            set_num_threads(args.threads)

        def run():
            return model.forward(ids, mask)

    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        logits = run()
        times.append((time.perf_counter() - start) * 1e3)
    dump_dir = Path(args.dump_dir)
    dump_dir.mkdir(parents=True, exist_ok=True)
    out = dump_dir / f"logits_{args.backend}.npy"
    save_npy(out, logits)
    stat = f"{np.median(times):.3f} ms" + (f" (median of {len(times)}, min {min(times):.3f})" if len(times) > 1 else "")
    print(f"[{args.backend}] forward {tuple(ids.shape)} -> logits {logits.shape}: {stat}")
    print(f"[{args.backend}] saved {out}")
    return 0


def cmd_compare(args) -> int:
    from .arrays import compare_arrays, load_npy

    result = compare_arrays(load_npy(args.actual), load_npy(args.expected), rtol=args.rtol, atol=args.atol)
    print(f"{args.actual} vs {args.expected}: {result}")
    return 0 if result.ok else 1


def cmd_versions(args) -> int:
    from .engine import versions

    rows = versions()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'version':<8}{'cache':<7}{'kv dtype':<10}{'quant':<18}{'sharing':<9}description")
    for v in rows:
        print(f"{v['name']:<8}{'yes' if v['use_cache'] else 'no':<7}{v['kv_dtype']:<10}{v['kv_quant'] or '-':<18}"
              f"{'pairs' if v['cross_layer_sharing'] else 'no':<9}{v['description']}")
    return 0


def cmd_generate(args) -> int:
    from .engine import Engine
    from .model import load, random_tokens

    model = load(args.model)
    if args.prompt_ids:
        ids = np.array([args.prompt_ids], dtype=np.int64)
        mask = None
    elif model.inputs is not None and args.prompt_length is None:
        ids, mask = model.inputs["input_ids"], model.inputs["attention_mask"]
    else:
        ids = random_tokens(args.batch_size, args.prompt_length or 8, model.config.vocab_size, seed=args.seed)
        mask = None
    for name in args.version:
        engine = Engine(model, name, threads=args.threads or None, weight_dtype=args.weight_dtype,
                        matmul_precision=args.matmul_precision)
        gen = engine.generate(ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                              eos_token_id=args.eos_token_id, attention_mask=mask)
        t = gen.timings
        print(f"[{name}] {engine.version['description']} | weights {engine.weight_dtype} | "
              f"prefill GEMM {engine.prefill_gemm}")
        for row in gen.new_tokens:
            print("  new tokens:", " ".join(map(str, row.tolist())))
        per_token = np.median(t["per_token_ms"]) if t["per_token_ms"] else float("nan")
        print(f"  TTFT {t['ttft_ms']:.3f} ms | decode {per_token:.3f} ms/token (median) | "
              f"{t['decode_tokens_per_s']:.1f} tokens/s per row | total {t['total_ms']:.2f} ms")
        print("  phases (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in t["phases_ms"].items()))
        print(f"  KV cache {gen.kv_cache_bytes / 2**10:.1f} KiB used, {gen.kv_cache_capacity_bytes / 2**10:.1f} KiB "
              f"allocated | engine buffers {gen.peak_bytes / 2**20:.2f} MiB | peak RSS {gen.peak_rss_bytes / 2**20:.0f} MiB")
    return 0


def _add_model_arg(p) -> None:
    p.add_argument("--model", default=_env_default("JSON_PATH", "dump_minimind/minimind.json"),
                   help="model file (default: $JSON_PATH or dump_minimind/minimind.json)")


def _add_threads_arg(p) -> None:
    p.add_argument("--threads", type=int, default=0, help="threads (default: all CPUs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celerinfer", description="LLM inference engine and KV-cache benchmarks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("random-model", help="generate a deterministic random model (seed JSON or safetensors)")
    p.add_argument("--hidden", type=int, default=64, help="hidden_size (default 64)")
    p.add_argument("--layers", type=int, default=2, help="num_hidden_layers (default 2)")
    p.add_argument("--heads", type=int, default=8, help="num_attention_heads (default 8)")
    p.add_argument("--kvh", type=int, default=2, help="num_key_value_heads (default 2)")
    p.add_argument("--vocab", type=int, default=128, help="vocab_size (default 128)")
    p.add_argument("--max-pos", type=int, default=128, help="max_position_embeddings (default 128)")
    p.add_argument("--inter", type=int, default=0, help="intermediate_size (default: 4*hidden rounded up to 64)")
    p.add_argument("--rope-theta", type=float, default=1e6, help="RoPE base (default 1e6)")
    p.add_argument("--rms-norm-eps", type=float, default=1e-5, help="RMSNorm epsilon (default 1e-5)")
    p.add_argument("--tie-embeddings", action="store_true", help="tie lm_head to the token embedding")
    p.add_argument("--seq-len", type=int, default=5, help="length of the example inputs (default 5)")
    p.add_argument("--batch-size", type=int, default=2, help="batch of the example inputs (default 2)")
    p.add_argument("--seed", type=int, default=123, help="random seed (default 123)")
    p.add_argument("--output", default="dump_minimind/minimind.json", help="output path: .json or .safetensors")
    p.set_defaults(func=cmd_random_model)

    p = sub.add_parser("forward", help="time one forward pass and write the logits as .npy")
    _add_model_arg(p)
    p.add_argument("--dump-dir", default=_env_default("DUMP_DIR", "dump_minimind"),
                   help="where logits_<backend>.npy goes (default: $DUMP_DIR or dump_minimind)")
    p.add_argument("--warmup", type=int, default=int(_env_default("WARMUP", 5)),
                   help="untimed warm-up runs (default: $WARMUP or 5)")
    p.add_argument("--iters", type=int, default=1, help="timed runs; the median is printed (default 1)")
    p.add_argument("--backend", choices=["cpp", "torch"], default="cpp", help="engine (default cpp)")
    _add_threads_arg(p)
    p.add_argument("--seq-len", type=int, default=None, help="use random inputs of this length instead of the file's")
    p.add_argument("--batch-size", type=int, default=1, help="batch of random inputs (with --seq-len)")
    p.add_argument("--seed", type=int, default=0, help="seed of random inputs (with --seq-len)")
    p.set_defaults(func=cmd_forward)

    p = sub.add_parser("versions", help="list the KV-cache versions (the registry)")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("generate", help="generate tokens with one or more versions; print tokens, timings, memory")
    _add_model_arg(p)
    p.add_argument("--version", nargs="+", default=["v1"], help="versions to run, e.g. v0 v1 v2 (default v1)")
    p.add_argument("--prompt-ids", type=int, nargs="+", help="prompt token ids (default: the file's inputs)")
    p.add_argument("--prompt-length", type=int, default=None, help="use a random prompt of this length instead")
    p.add_argument("--batch-size", type=int, default=1, help="rows of a random prompt (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate (default 32)")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0: off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (1: off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="penalty on repeated tokens (1: off)")
    p.add_argument("--eos-token-id", type=int, default=None, help="stop a row at this token")
    p.add_argument("--seed", type=int, default=0, help="sampling (and random prompt) seed")
    p.add_argument("--weight-dtype", choices=WEIGHT_DTYPES, default="f32",
                   help="linear-layer weights: f32 (default), bf16, or int8 (32 values per scale)")
    p.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                   help="prefill with f32/int8 weights: highest (f32 products, default) or high (bf16x3 on AMX)")
    _add_threads_arg(p)
    p.set_defaults(func=cmd_generate)

    add_bench_parsers(sub)
    add_run_parser(sub)

    p = sub.add_parser("compare", help="compare two .npy arrays; exit 1 when they differ")
    p.add_argument("actual")
    p.add_argument("expected")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance, of max|expected| (default 1e-4)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.set_defaults(func=cmd_compare)
    return parser


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("celerinfer")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "warmup", 0) < 0 or getattr(args, "iters", 1) < 1:
        print("celerinfer: error: --warmup must be >= 0 and --iters >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:  # bad input: a message, not a traceback
        print(f"celerinfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"celerinfer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
