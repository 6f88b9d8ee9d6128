"""`celerinfer run`: generate text from a prompt and, with --benchmark, compare the
non-optimized engine (v0: no KV cache) with an optimized version (v1 by default).

The benchmark workflow follows the seed's inference guide: every benchmark records one
baseline run and one optimized run in the benchmark folder (default ``./inference_benchmarks``)
and the folder's views, ``inference_metrics.json``, ``inference_metrics.csv``,
``optimization_comparison.png`` and ``performance_over_time.png``, are regenerated from every
run recorded there (:mod:`celerinfer.results.inference_metrics`). Runs accumulate across
invocations; concurrent invocations never lose runs. What is measured, and how:
:mod:`celerinfer.bench.seed_run`; the arguments: :mod:`.run_args`.
"""

from __future__ import annotations

import sys
import time

from ..bench.seed_run import (MB, Prompt, RunContext, add_speedup, generate_timed, measure, new_pair_id, record_of,
                              sized_engine, text_of)
from ..results.inference_metrics import BASELINE_VERSION, MetricsStore
from ..text import printable
from .run_args import add_parser as _add_arguments
from .run_args import config_arg, resolve_prompts, validate

RULE = "=" * 70


def add_parser(subparsers):
    """Register the `run` subcommand (all its flags) on an argparse subparsers object."""
    p = _add_arguments(subparsers)
    p.set_defaults(func=cmd_run)
    return p


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _say(message: str = "", err: bool = False) -> None:
    """Print a line without breaking a tqdm bar, safe for any stream encoding."""
    from tqdm import tqdm

    stream = sys.stderr if err else sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        message = message.encode(encoding, errors="backslashreplace").decode(encoding, errors="replace")
    except LookupError:
        message = message.encode("ascii", errors="backslashreplace").decode("ascii")
    tqdm.write(message, file=stream)


def _warn(message: str) -> None:
    _say(f"celerinfer run: warning: {message}", err=True)


def _mb_text(value_mb: float | None) -> str:
    if value_mb is None:
        return "n/a"
    return f"{value_mb:.1f} MB" if value_mb >= 100 else f"{value_mb:.3f} MB"


def _print_run(run: dict, tokenizer, prompt: Prompt) -> None:
    _say(f"  Total Time: {run['total_time']:.3f} s")
    tps = run["tokens_per_second"]
    _say(f"  Tokens/Second: {tps:.1f}" if tps is not None else "  Tokens/Second: n/a")
    tpt = run["time_per_token"]
    _say(f"  Time/Token: {tpt:.2f} ms" if tpt is not None else "  Time/Token: n/a")
    _say(f"  Memory Used: {_mb_text(run['memory_used_mb'])} (engine buffers incl. KV cache "
         f"{_mb_text(run['kv_cache_mb'])}; process peak RSS {run['peak_rss_mb']:.1f} MB)")
    _say(f"  Generated: {_display(tokenizer, prompt, run['generated_ids'], limit=120)}")


def _display(tokenizer, prompt: Prompt, new_ids: list[int], limit: int | None = None) -> str:
    if prompt.text is not None and getattr(tokenizer, "covers_bytes", True):
        return printable(prompt.text + tokenizer.decode(new_ids), limit)
    return printable("ids " + " ".join(map(str, new_ids)), limit)


def _summary(pairs: list[tuple[dict, dict]]) -> None:
    import numpy as np

    from ..results.speedup import speedup

    def stat(values, unit, fmt="{:.1f}"):
        values = [v for v in values if v is not None]
        if not values:
            return "n/a"
        text = "median " + fmt.format(float(np.median(values))) + unit
        if len(values) > 1:
            text += (f" (mean {fmt.format(float(np.mean(values)))}, min {fmt.format(min(values))}, "
                     f"max {fmt.format(max(values))})")
        return text

    base = [b["tokens_per_second"] for b, o in pairs if b["tokens_per_second"] and o["tokens_per_second"]]
    opt = [o["tokens_per_second"] for b, o in pairs if b["tokens_per_second"] and o["tokens_per_second"]]
    _say()
    _say(f"SUMMARY over {len(pairs)} prompts")
    _say(f"  Non-optimized tokens/s: {stat([b['tokens_per_second'] for b, _ in pairs], '')}")
    _say(f"  Optimized tokens/s:     {stat([o['tokens_per_second'] for _, o in pairs], '')}")
    # the one speedup (results/speedup.py): the ratio of the median rates, as the plot shows it
    _say(f"  Speedup:                {speedup(base, opt).text() if base else 'n/a'} "
         f"(median optimized tokens/s / median non-optimized)")
    _say(f"  Memory reduction:       {stat([o['memory_reduction_pct'] for _, o in pairs], '%')}")


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def _new_token_budget(max_length: int, prompt_length: int, max_positions: int, label: str) -> int:
    room = max_positions - prompt_length
    if room < 1:
        raise ValueError(f"{label} has {prompt_length} tokens: no room to generate within the model's "
                         f"max_position_embeddings ({max_positions})")
    if max_length > room:
        _say(f"celerinfer run: note: --max-length {max_length} capped to {room} new tokens for {label} "
             f"(max_position_embeddings {max_positions} - prompt length {prompt_length})", err=True)
        return room
    return max_length


def _benchmark_prompt(ctx: RunContext, args, prompt: Prompt, label: str, store: MetricsStore) -> tuple[dict, dict]:
    max_new = _new_token_budget(args.max_length, len(prompt.ids), ctx.model.config.max_position_embeddings, label)
    engines = {"baseline": sized_engine(ctx, BASELINE_VERSION, len(prompt.ids) + max_new),
               "optimized": sized_engine(ctx, args.version, len(prompt.ids) + max_new)}
    pair_id = new_pair_id()
    _say()
    _say(f"BENCHMARK RUN: {pair_id}")
    _say(RULE)
    shown = printable(prompt.text, 100) if prompt.text is not None else " ".join(map(str, prompt.ids))
    _say(f"Prompt: {shown} ({len(prompt.ids)} tokens; {max_new} new tokens)")
    runs = {}
    for kind, heading in (("baseline", "NON-OPTIMIZED"), ("optimized", "OPTIMIZED")):
        _say()
        _say(f"[{engines[kind].version['name']}] Running {heading} inference...")
        runs[kind], _ = measure(ctx, engines[kind], prompt, max_new, optimized=kind == "optimized", pair_id=pair_id,
                                warmup=args.warmup)
        _print_run(runs[kind], ctx.tokenizer, prompt)
    baseline, optimized = runs["baseline"], runs["optimized"]
    add_speedup(baseline, optimized)
    _say()
    speedup = optimized["speedup"]
    if speedup is None:
        _say("SPEEDUP: n/a")
    elif speedup >= 1:
        _say(f"SPEEDUP: {speedup:.2f}x faster with optimizations")
    else:
        _say(f"SPEEDUP: {speedup:.2f}x (slower with optimizations)")
    reduction = optimized["memory_reduction_pct"]
    _say("MEMORY REDUCTION: n/a" if reduction is None else f"MEMORY REDUCTION: {reduction:.1f}%")
    if not optimized["same_tokens_as_baseline"]:
        _say("  (the optimized run generated different tokens than the non-optimized one)")
    total = len(store.append_records([record_of(ctx, runs[kind], engines[kind]) for kind in ("baseline", "optimized")]))
    _say(f"Recorded 2 runs in {store.store_path} ({total} in all)")
    return baseline, optimized


def _chat_prompt(ctx: RunContext, args, prompt: Prompt, label: str) -> None:
    """One user message, the answer streamed to the terminal as it is generated."""
    from .text_stream import TextStream

    max_new = _new_token_budget(args.max_length, len(prompt.ids), ctx.model.config.max_position_embeddings, label)
    engine = sized_engine(ctx, args.version, len(prompt.ids) + max_new)
    _say()
    _say(f"User: {printable(prompt.text)}")
    sys.stdout.write("Assistant: ")
    stream = TextStream(ctx.tokenizer, ctx.eos_token_id)
    try:
        gen, seconds = generate_timed(engine, prompt.ids, ctx.options(max_new), on_token=stream)
    finally:
        stream.finish()
    n = int(gen.new_tokens.shape[1])
    ended = "end of turn" if stream.stopped else f"--max-length {max_new} reached"
    _say(f"[{engine.version['name']}, {engine.weight_dtype}] {n} tokens ({ended}) in {seconds:.3f} s: "
         f"{n / seconds if seconds > 0 else float('nan'):.1f} tokens/s, TTFT {gen.timings['ttft_ms']:.1f} ms, "
         f"decode {gen.timings['decode_tokens_per_s']:.1f} tokens/s", err=True)


def _plain_prompt(ctx: RunContext, args, prompt: Prompt, label: str) -> None:
    if prompt.chat:
        return _chat_prompt(ctx, args, prompt, label)
    max_new = _new_token_budget(args.max_length, len(prompt.ids), ctx.model.config.max_position_embeddings, label)
    engine = sized_engine(ctx, args.version, len(prompt.ids) + max_new)
    gen, seconds = generate_timed(engine, prompt.ids, ctx.options(max_new))
    new_ids = [int(t) for t in gen.new_tokens[0]]
    n = len(new_ids)
    _say()
    if prompt.text is not None:
        _say(f"Prompt: {printable(prompt.text)} ({len(prompt.ids)} tokens)")
    _say(f"Prompt ids: {' '.join(map(str, prompt.ids))}")
    text = text_of(ctx.tokenizer, new_ids)
    if text is not None:
        _say(f"Generated text: {printable(text)}")
        if prompt.text is not None:
            _say(f"Full text: {printable(prompt.text + text)}")
    _say(f"Generated ids: {' '.join(map(str, new_ids))}")
    tps = n / seconds if seconds > 0 else float("nan")
    _say(f"[{engine.version['name']}] {n} tokens in {seconds:.3f} s: {tps:.1f} tokens/s, "
         f"{1e3 * seconds / max(n, 1):.2f} ms/token, TTFT {gen.timings['ttft_ms']:.2f} ms | "
         f"memory {_mb_text(gen.peak_bytes / MB)} (KV cache {_mb_text(gen.kv_cache_bytes / MB)}), "
         f"peak RSS {gen.peak_rss_bytes / MB:.1f} MB")


def _finish_benchmark(store: MetricsStore, scope: str) -> None:
    """The views, regenerated from every recorded run: the JSON and CSV, then the two plots."""
    from ..plots.inference_metrics import plot_comparison, plot_over_time

    def draw(runs):
        summary = plot_comparison(runs, store.comparison_path, scope=scope)
        plot_over_time(runs, store.over_time_path)
        return summary

    _say()
    _say("Generating comparison plots and data...")
    try:
        summary = store.regenerate(draw)
    except Exception as exc:  # the runs are already safe in the store; a plot problem must not lose them
        _warn(f"could not draw the plots: {type(exc).__name__}: {exc}")
    else:
        _say(f"Comparison plot saved to: {store.comparison_path} ({summary['title']})")
        _say(f"Performance over time plot saved to: {store.over_time_path}")
    _say(f"Metrics exported to CSV: {store.csv_path}")


def _context(args) -> tuple[RunContext, list[Prompt]]:
    """The model, tokenizer and prompts of the arguments, checked before anything runs."""
    from ..io.model_files import load
    from ..model import config_to_dict
    from ..package_info import package_version
    from ..runtime import get_num_threads, set_num_threads

    validate(args)
    if args.device != "cpu":
        raise ValueError(f"device {args.device!r} is not available: this build runs on 'cpu' only")
    model = load(args.model, config_arg(args.config))
    tokenizer = model.tokenizer
    prompts = resolve_prompts(args, tokenizer, model.config.vocab_size)
    max_pos = model.config.max_position_embeddings
    for n, prompt in enumerate(prompts, 1):
        if len(prompt.ids) >= max_pos:
            where = "the prompt" if len(prompts) == 1 else f"prompt {n}"
            raise ValueError(f"{where} has {len(prompt.ids)} tokens: no room to generate within the model's "
                             f"max_position_embeddings ({max_pos})")
    if args.threads:
        set_num_threads(args.threads)
    info = {"path": str(args.model), "config": config_to_dict(model.config), "threads": int(get_num_threads()),
            "package_version": package_version()}
    # A model with a trained tokenizer stops at its end of turn (chat) or end of text.
    stop = getattr(tokenizer, "stop_token_id", None)
    ctx = RunContext(model, tokenizer, info, args.device, args.max_length, args.temperature, args.top_k, args.top_p,
                     args.seed, eos_token_id=None if stop is None else int(stop))
    return ctx, prompts


def _run(args) -> int:
    from tqdm import tqdm

    from ..registry import versions

    ctx, prompts = _context(args)
    store = None
    if args.benchmark:
        store = MetricsStore(args.benchmark_dir, warn=_warn)
        store.check_writable()  # before measuring, not after
        _say(f"BENCHMARK MODE: Comparing optimized ({args.version}) vs non-optimized ({BASELINE_VERSION}) inference")
        _say(RULE)
        _say(f"Model: {args.model} ({ctx.model.config}); device {args.device}; {len(prompts)} prompt(s); "
             f"max length {args.max_length}, temperature {args.temperature}, top-k {args.top_k}, "
             f"top-p {args.top_p}, seed {args.seed}")
    else:
        description = next(v["description"] for v in versions() if v["name"] == args.version)
        _say(f"[{args.version}] {description}")

    pairs: list[tuple[dict, dict]] = []
    done = 0
    interrupted = False
    # A bar for batches only, and only on a terminal (disable=None): piped stderr stays clean.
    bar = tqdm(prompts, desc="prompts", unit="prompt", file=sys.stderr, disable=True if len(prompts) < 2 else None,
               leave=False)
    try:
        for n, prompt in enumerate(bar, 1):
            if n > 1 and args.delay > 0:
                time.sleep(args.delay)
            label = "the prompt" if len(prompts) == 1 else f"prompt {n}"
            if store is not None:
                pairs.append(_benchmark_prompt(ctx, args, prompt, label, store))
            else:
                _plain_prompt(ctx, args, prompt, label)
            done += 1
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if interrupted:
        _say(f"celerinfer run: interrupted after {done} of {len(prompts)} prompts"
             + (f"; the {2 * len(pairs)} runs recorded are kept" if store is not None else ""), err=True)
    if store is not None:
        if len(pairs) > 1:
            _summary(pairs)
        if pairs or store.store_path.exists() or store.json_path.exists():
            _finish_benchmark(store, args.plot_scope)
        if not interrupted:
            _say()
            _say(f"Benchmark complete! Results saved to: {store.directory}")
    return 130 if interrupted else 0


def cmd_run(args) -> int:
    """The `run` subcommand: 0 on success, 2 on bad input (a message, no traceback), 130 when
    interrupted (the runs recorded so far stay in the folder)."""
    from ..model import FormatError

    try:
        return _run(args)
    except (ValueError, TypeError, OSError, ImportError, FormatError) as exc:
        print(f"celerinfer run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("celerinfer run: interrupted", file=sys.stderr)
        return 130
