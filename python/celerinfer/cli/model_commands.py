"""The model commands of the CLI: random-model, forward, versions, generate, and compare (two
.npy arrays). Each subcommand is one function taking parsed arguments."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..engine import MATMUL_PRECISIONS, WEIGHT_DTYPES
from .args import add_flags, add_model_arg, add_threads_arg, env_default


def cmd_random_model(args) -> int:
    from ..model import ModelConfig, random_model, random_tokens

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
    replaced = model.save(args.output)
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({size / 2**20:.1f} MiB)")
    if replaced:
        print(f"  replaced: {', '.join(str(p) for p in replaced)}")
    print(f"  {config}")
    print(f"  parameters: {config.num_parameters:,}; inputs: input_ids {ids.shape}")
    return 0


def _forward_inputs(model, args):
    if model.inputs is not None and args.seq_len is None:
        return model.inputs["input_ids"], model.inputs["attention_mask"]
    from ..model import random_tokens

    seq_len = args.seq_len or 8
    ids = random_tokens(args.batch_size, seq_len, model.config.vocab_size, seed=args.seed)
    return ids, np.ones_like(ids)


def cmd_forward(args) -> int:
    from ..io.model_files import load
    from ..io.npy import save_npy

    model = load(args.model)
    ids, mask = _forward_inputs(model, args)
    if args.backend == "torch":
        import torch

        from ..reference.model import ReferenceModel

        net = ReferenceModel.from_model(model)

        if args.threads:
            torch.set_num_threads(args.threads)
        ids_t, mask_t = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))

        def run():
            with torch.no_grad():
                return net(ids_t, mask_t).numpy()

    else:
        from ..runtime import set_num_threads

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


def cmd_compare_arrays(args) -> int:
    from ..array_comparison import compare_arrays
    from ..io.npy import load_npy

    result = compare_arrays(load_npy(args.actual), load_npy(args.expected), rtol=args.rtol, atol=args.atol)
    print(f"{args.actual} vs {args.expected}: {result}")
    return 0 if result.ok else 1


def cmd_versions(args) -> int:
    from ..registry import versions

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
    from ..engine import Engine
    from ..generate_options import GenerateOptions
    from ..io.model_files import load
    from ..model import random_tokens

    model = load(args.model)
    if args.prompt_ids:
        ids = np.array([args.prompt_ids], dtype=np.int64)
        mask = None
    elif model.inputs is not None and args.prompt_length is None:
        ids, mask = model.inputs["input_ids"], model.inputs["attention_mask"]
    else:
        ids = random_tokens(args.batch_size, args.prompt_length or 8, model.config.vocab_size, seed=args.seed)
        mask = None
    options = GenerateOptions(args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              repetition_penalty=args.repetition_penalty, seed=args.seed,
                              eos_token_id=args.eos_token_id)
    for name in args.version:
        engine = Engine(model, name, threads=args.threads or None, weight_dtype=args.weight_dtype,
                        matmul_precision=args.matmul_precision)
        gen = engine.generate(ids, options, attention_mask=mask)
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


#: random-model's flags (flag, type, default, help): the ModelConfig fields, then the example inputs
_RANDOM_MODEL_FLAGS = (
    ("--hidden", int, 64, "hidden_size (default 64)"), ("--layers", int, 2, "num_hidden_layers (default 2)"),
    ("--heads", int, 8, "num_attention_heads (default 8)"), ("--kvh", int, 2, "num_key_value_heads (default 2)"),
    ("--vocab", int, 128, "vocab_size (default 128)"),
    ("--max-pos", int, 128, "max_position_embeddings (default 128)"),
    ("--inter", int, 0, "intermediate_size (default: 4*hidden rounded up to 64)"),
    ("--rope-theta", float, 1e6, "RoPE base (default 1e6)"),
    ("--rms-norm-eps", float, 1e-5, "RMSNorm epsilon (default 1e-5)"),
    # the example inputs saved with the model
    ("--seq-len", int, 5, "length of the example inputs (default 5)"),
    ("--batch-size", int, 2, "batch of the example inputs (default 2)"),
    ("--seed", int, 123, "random seed (default 123)"),
)
#: generate's prompt and sampling flags (the sampling ones: the fields of GenerateOptions)
_GENERATE_FLAGS = (
    ("--prompt-length", int, None, "use a random prompt of this length instead"),
    ("--batch-size", int, 1, "rows of a random prompt (default 1)"),
    ("--max-new-tokens", int, 32, "tokens to generate (default 32)"),
    ("--temperature", float, 0.0, "0: greedy (default)"),
    ("--top-k", int, 0, "keep the k most likely tokens (0: off)"),
    ("--top-p", float, 1.0, "nucleus sampling threshold (1: off)"),
    ("--repetition-penalty", float, 1.0, "penalty on repeated tokens (1: off)"),
    ("--eos-token-id", int, None, "stop a row at this token"), ("--seed", int, 0, "sampling (and random prompt) seed"),
)


def add_parsers(sub) -> None:
    """random-model, forward, versions and generate (compare: :func:`add_compare_parser`)."""
    p = sub.add_parser("random-model", help="generate a deterministic random model (seed JSON or safetensors)")
    add_flags(p, _RANDOM_MODEL_FLAGS[:9])
    p.add_argument("--tie-embeddings", action="store_true", help="tie lm_head to the token embedding")
    add_flags(p, _RANDOM_MODEL_FLAGS[9:])
    p.add_argument("--output", default="dump_minimind/minimind.json", help="output path: .json or .safetensors")
    p.set_defaults(func=cmd_random_model)

    p = sub.add_parser("forward", help="time one forward pass and write the logits as .npy")
    add_model_arg(p)
    p.add_argument("--dump-dir", default=env_default("DUMP_DIR", "dump_minimind"),
                   help="where logits_<backend>.npy goes (default: $DUMP_DIR or dump_minimind)")
    p.add_argument("--warmup", type=int, default=int(env_default("WARMUP", 5)),
                   help="untimed warm-up runs (default: $WARMUP or 5)")
    p.add_argument("--iters", type=int, default=1, help="timed runs; the median is printed (default 1)")
    p.add_argument("--backend", choices=["cpp", "torch"], default="cpp", help="engine (default cpp)")
    add_threads_arg(p)
    add_flags(p, (("--seq-len", int, None, "use random inputs of this length instead of the file's"),
                  ("--batch-size", int, 1, "batch of random inputs (with --seq-len)"),
                  ("--seed", int, 0, "seed of random inputs (with --seq-len)")))
    p.set_defaults(func=cmd_forward)

    p = sub.add_parser("versions", help="list the KV-cache versions (the registry)")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("generate", help="generate tokens with one or more versions; print tokens, timings, memory")
    add_model_arg(p)
    p.add_argument("--version", nargs="+", default=["v1"], help="versions to run, e.g. v0 v1 v2 (default v1)")
    p.add_argument("--prompt-ids", type=int, nargs="+", help="prompt token ids (default: the file's inputs)")
    add_flags(p, _GENERATE_FLAGS)
    p.add_argument("--weight-dtype", choices=WEIGHT_DTYPES, default="f32",
                   help="linear-layer weights: f32 (default), bf16, or int8 (32 values per scale)")
    p.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                   help="prefill with f32/int8 weights: highest (f32 products, default) or high (bf16x3 on AMX)")
    add_threads_arg(p)
    p.set_defaults(func=cmd_generate)


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare two .npy arrays; exit 1 when they differ")
    p.add_argument("actual")
    p.add_argument("expected")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance, of max|expected| (default 1e-4)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.set_defaults(func=cmd_compare_arrays)
