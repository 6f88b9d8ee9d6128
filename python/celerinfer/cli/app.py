"""The `celerinfer` command: its parser (every subcommand's, from the command modules) and main().
Bad input is a message and exit status 2, never a traceback; Ctrl-C is exit status 130."""

from __future__ import annotations

import argparse
import os
import sys

from ..bench.blas_threads import one_blas_thread
from ..package_info import package_version
from . import bench_commands, model_commands, report_commands, run_command, sweep_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celerinfer", description="LLM inference engine and KV-cache benchmarks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_commands.add_parsers(sub)
    bench_commands.add_parsers(sub)
    sweep_command.add_parser(sub)
    report_commands.add_parsers(sub)
    run_command.add_parser(sub)
    model_commands.add_compare_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "warmup", 0) < 0 or getattr(args, "iters", 1) < 1:
        print("celerinfer: error: --warmup must be >= 0 and --iters >= 1", file=sys.stderr)
        return 2
    try:
        # numpy's BLAS on one thread from the start (bench/blas_threads.py says why): its spinning
        # threads would take the cores the engine measures on
        with one_blas_thread():
            return args.func(args)
    except BrokenPipeError:  # `celerinfer ... | head` closed the pipe: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush fails silently too
        return 141  # 128 + SIGPIPE, the status a shell shows for a tool stopped by a closed pipe
    except (ValueError, TypeError, OSError) as exc:  # bad input: a message, not a traceback
        print(f"celerinfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"celerinfer {args.command}: interrupted", file=sys.stderr)
        return 130
