"""The benchmark commands of the CLI: bench (and bench compare), plot, calibrate, compare-runs,
export-csv."""

from __future__ import annotations

import sys
from pathlib import Path

from ..bench.backend_comparison import DEFAULT_GEN, DEFAULT_LLAMA_KV, LONG_PROMPT, MATCHING_GGUF
from ..bench.backends import BACKENDS, LLAMA_KV_TYPES
from ..bench.config import BENCHMARKS

DEFAULT_LOG = "results/results.jsonl"


def _log_file(args, config=None) -> Path:
    return Path(args.log_file or (config or {}).get("log_file") or DEFAULT_LOG)


def cmd_bench(args) -> int:
    from ..bench.config import benchmark_names, load_config
    from ..bench.presets import PRESETS
    from ..bench.runner import BenchRun, Interrupted
    from ..results.summary import summarize_records

    if args.list_presets:
        from ..model import ModelConfig

        for name, preset in PRESETS.items():
            params = ModelConfig(**preset["model"]).num_parameters
            print(f"{name:<15}{params / 1e6:>8.1f}M parameters  {preset['description']}")
        return 0
    if "compare" in args.benchmarks:
        return _bench_compare(args)
    overrides = {"versions": args.version, "model": args.model, "prompt_length": args.prompt_length,
                 "batch_size": args.batch_size, "T_values": args.T_values, "T_star": args.T_star,
                 "num_warmup_runs": args.num_warmup_runs, "num_measure_runs": args.num_measure_runs,
                 "seed": args.seed, "dtype": args.dtype, "weight_dtype": args.weight_dtype,
                 "matmul_precision": args.matmul_precision, "threads": args.threads}
    quality = {"data": args.corpus, "sequence_length": args.context_length, "stride": args.stride,
               "num_sequences": args.num_windows, "weight_dtypes": args.quality_weight_dtypes}
    if any(v is not None for v in quality.values()):
        overrides["perplexity"] = {k: v for k, v in quality.items() if v is not None}
    config = load_config(args.config, preset=args.preset, overrides=overrides)
    log_file = _log_file(args, config)
    _clear_log_if_asked(args, log_file)
    args.benchmarks = benchmark_names(args.benchmarks)
    print(f"celerinfer bench {' '.join(args.benchmarks)}: model {config['model'] or config['preset']}, "
          f"versions {' '.join(config['versions'])}, log {log_file}", file=sys.stderr)
    bench = None
    try:
        bench = BenchRun(config, log_file=log_file, progress=False if args.no_progress else None)
        bench.run(args.benchmarks)
    except (Interrupted, KeyboardInterrupt):
        kept = len(bench.records) if bench else 0
        print(f"interrupted: {kept} record(s) measured before Ctrl-C are kept in {log_file}", file=sys.stderr)
        return 130
    print(summarize_records(bench.records))
    print(f"\n{len(bench.records)} records appended to {log_file} (run {bench.run_id}); "
          f"plots: celerinfer plot --log-file {log_file}")
    if args.plot:
        return cmd_plot(args)
    return 0


def _clear_log_if_asked(args, log_file: Path) -> None:
    if args.clear_log:
        from ..results.store import clear_log

        backup = clear_log(log_file)
        if backup:
            print(f"moved the old log to {backup}")


def _bench_compare(args) -> int:
    log_file = _log_file(args)
    _clear_log_if_asked(args, log_file)
    status = _run_backend_comparison(args, log_file)
    return cmd_plot(args) if args.plot and status == 0 else status


def _run_backend_comparison(args, log_file) -> int:
    """`celerinfer bench compare`: runs, prints the table, returns the exit status."""
    from ..bench.backend_comparison import BENCHMARK, format_table, run_backend_comparison

    if [b for b in args.benchmarks if b != BENCHMARK]:
        raise ValueError("compare runs alone: `celerinfer bench compare [options]`")
    run = run_backend_comparison(preset=args.preset, model=args.model, prompt_length=args.prompt_length,
                                 gen_length=args.gen_len, repeats=args.repeats, long=args.long, threads=args.threads,
                                 seed=args.seed, log_file=log_file, progress=False if args.no_progress else None,
                                 backend_names=args.backends, weight_dtypes=args.weight_dtypes, versions=args.version,
                                 llama_kv=args.llama_kv, gguf_dir=args.gguf_dir)
    for name, reason in run.skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(format_table(run.records))
    from ..results.noise import noise_warnings
    for warning in noise_warnings(run.records):  # "(noisy)" in the table: why
        print(f"noise guard: {warning}", file=sys.stderr)
    print(f"\n{len(run.records)} records appended to {run.log_file} (run {run.run_id})")
    if run.interrupted:
        print("interrupted: the setups measured before Ctrl-C are kept", file=sys.stderr)
        return 130
    return 0


def cmd_plot(args) -> int:
    from ..plots.catalog import make_plots
    from ..registry import versions
    from ..results.store import read_records

    log_file = _log_file(args)
    records = read_records(log_file)
    if not records:
        print(f"celerinfer plot: no records in {log_file}: run `celerinfer bench` first", file=sys.stderr)
        return 1
    out_dir = Path(args.out_dir or log_file.parent / "plots")
    written = make_plots(records, out_dir, run_id=getattr(args, "run_id", None), registry=versions())
    width = max([24] + [len(name) + 2 for name in written])  # a sweep's facets: "host/setting/plot"
    for name, path in written.items():
        print(f"{name:<{width}}{path}")
    return 0


def cmd_calibrate(args) -> int:
    from ..bench import calibration

    result = calibration.calibrate(threads=args.threads or None)
    path = calibration.default_calibration_path()
    calibration.save_calibration(result, path)
    bw, mm = result["bandwidth_gbps"], result["matmul_gflops"]
    print(f"memory bandwidth: {bw['median']:.2f} GB/s (triad, median of {bw['n']}, 95% CI {bw['ci95_low']:.2f}-"
          f"{bw['ci95_high']:.2f})")
    rd = result["read_bandwidth_gbps"]
    print(f"read bandwidth:   {rd['median']:.2f} GB/s (read-only stream, median of {rd['n']}); ceiling "
          f"{result['bandwidth_ceiling_gbps']:.2f} GB/s (the best repetition of either)")
    print(f"matmul peak:      {mm['median']:.2f} GFLOP/s (median of {mm['n']}, 95% CI {mm['ci95_low']:.2f}-"
          f"{mm['ci95_high']:.2f})")
    print(f"threads {result['threads']}; saved to {path}")
    return 0


def cmd_compare_runs(args) -> int:
    from ..results.run_comparison import compare_runs, format_comparison_report

    report = compare_runs(_log_file(args), args.run_a, args.run_b, metric=args.metric)
    print(format_comparison_report(report))
    return 0


def cmd_export_csv(args) -> int:
    from ..results.csv_export import export_csv, export_samples_csv
    from ..results.store import read_records

    records = read_records(_log_file(args))
    if args.samples:
        out = Path(args.output or _log_file(args).with_suffix(".samples.csv"))
        _, rows = export_samples_csv(records, out)
        print(f"wrote {rows} samples of {len(records)} records to {out}")
    elif args.steps:
        from ..io.atomic import atomic_file
        from ..results.inference_metrics import csv_cell
        from ..results.step_csv import step_rows, steps_csv_text

        out = Path(args.output or _log_file(args).with_suffix(".steps.csv"))
        with atomic_file(out, newline="") as fh:
            fh.write(steps_csv_text(records, csv_cell))
        print(f"wrote {len(step_rows(records))} steps to {out}")
    else:
        out = Path(args.output or _log_file(args).with_suffix(".csv"))
        export_csv(records, out)
        print(f"wrote {len(records)} records to {out}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmark suite (latency, memory, phase, perplexity, roofline)")
    # No `choices` here: argparse < 3.12 checks a list default against them; the runner checks.
    p.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                   help=f"which: {', '.join(BENCHMARKS)} or all (default all); or compare (other backends, alone)")
    p.add_argument("--version", nargs="+", help="versions to run (default: the config's)")
    p.add_argument("--config", help="a YAML config (keys as in the packaged default_config.yaml)")
    p.add_argument("--preset", help="model preset (see --list-presets)")
    p.add_argument("--model", help="a model file instead of a preset")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--clear-log", action="store_true", help="start a fresh log (the old one is kept as a .bak)")
    p.add_argument("--log-file", help=f"results JSONL (default: the config's, {DEFAULT_LOG})")
    p.add_argument("--prompt-length", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--T-values", type=int, nargs="+", dest="T_values", help="new-token counts for latency/memory")
    p.add_argument("--T-star", type=int, dest="T_star", help="T of the phase breakdown")
    p.add_argument("--num-warmup-runs", type=int)
    p.add_argument("--num-measure-runs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--dtype")
    p.add_argument("--weight-dtype", dest="weight_dtype", help="linear-layer weights: stored (the model file's own formats), f32, bf16, int8, q4_0 or q4_1")
    p.add_argument("--matmul-precision", dest="matmul_precision",
                   help="prefill with f32/int8 weights: highest (f32 products) or high (bf16x3 on AMX)")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--plot", action="store_true", help="make the plots afterwards")
    p.add_argument("--out-dir", help="with --plot: where the plots go (default: <log dir>/plots)")
    g = p.add_argument_group("bench perplexity", "quality on real text (perplexity.* in the config)")
    g.add_argument("--corpus", help="perplexity: a corpus (licenses: Debian's licence texts), a text or .npy file, "
                                    "or random (default: the config's, licenses)")
    g.add_argument("--context-length", type=int, help="perplexity: tokens per window (default: the config's)")
    g.add_argument("--stride", type=int, help="perplexity: a window every STRIDE tokens (default: the context "
                                              "length, disjoint windows)")
    g.add_argument("--num-windows", type=int, help="perplexity: at most this many windows (default: the config's)")
    g.add_argument("--quality-weight-dtypes", nargs="+", metavar="DTYPE",
                   help="perplexity: the weight formats to score (the first with the baseline version is the "
                        "reference; default: the config's weight_dtype)")
    _add_backend_comparison_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("plot", help="make the plots from the stored results")
    p.add_argument("--log-file", help=f"results JSONL (default {DEFAULT_LOG})")
    p.add_argument("--out-dir", help="where the PNGs go (default: <log dir>/plots)")
    p.add_argument("--run-id", help="which run ('all' for every run; default: the latest per benchmark)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("calibrate", help="measure this machine's memory bandwidth and matmul peak")
    p.add_argument("--threads", type=int, default=0, help="threads (default: all CPUs)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("compare-runs", help="is the change between two runs beyond noise?")
    p.add_argument("run_a", nargs="?", default="previous", help="run id (or prefix, or 'previous')")
    p.add_argument("run_b", nargs="?", default="latest", help="run id (or prefix, or 'latest')")
    p.add_argument("--metric", default="total_ms", help="metric with raw samples (default total_ms)")
    p.add_argument("--log-file", help=f"results JSONL (default {DEFAULT_LOG})")
    p.set_defaults(func=cmd_compare_runs)

    p = sub.add_parser("export-csv", help="write the results log as CSV")
    p.add_argument("--log-file", help=f"results JSONL (default {DEFAULT_LOG})")
    p.add_argument("--output", help="CSV path (default: the log's path with .csv, .samples.csv or .steps.csv)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--samples", action="store_true",
                      help="one row per raw sample (every timing of every statistic) instead of one per record")
    view.add_argument("--steps", action="store_true",
                      help="seed 004's per-step CSV: one row per generated token of the run mode's records")
    p.set_defaults(func=cmd_export_csv)


def _add_backend_comparison_arguments(parser) -> None:
    """The `bench compare` flags (the bench command's --preset, --model, --prompt-length,
    --threads, --seed, --version, --log-file, --clear-log, --no-progress, --plot, --out-dir also apply)."""
    g = parser.add_argument_group("bench compare", "options of `celerinfer bench compare`")
    g.add_argument("--gen-len", type=int, default=DEFAULT_GEN, help=f"compare: decode tokens (default {DEFAULT_GEN})")
    g.add_argument("--repeats", type=int, default=3, help="compare: timed runs per setup, after a warm-up (default 3)")
    g.add_argument("--long", action="store_true", help=f"compare: a {LONG_PROMPT}-token prompt (long context)")
    g.add_argument("--backends", nargs="+", choices=BACKENDS, help="compare: which (default all installed)")
    g.add_argument("--weight-dtypes", nargs="+", choices=tuple(MATCHING_GGUF) + ("stored",),
                   help="compare: celerinfer weight dtypes, and llama.cpp's matching GGUF types; stored: a GGUF "
                        "model's own file, run by both (default: stored int8 for a GGUF model, else every format)")
    g.add_argument("--llama-kv", nargs="+", choices=tuple(LLAMA_KV_TYPES),
                   help=f"compare: llama.cpp KV cache types (default {' '.join(DEFAULT_LLAMA_KV)})")
    g.add_argument("--gguf-dir", help="compare: keep the GGUF exports in this folder (default: a temporary one)")
