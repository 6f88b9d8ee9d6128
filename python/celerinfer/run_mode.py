"""`celerinfer run`: generate text from a prompt and, with --benchmark, compare the
non-optimized engine (v0: no KV cache) with an optimized version (v1 by default).

The benchmark workflow follows the seed's inference guide: every benchmark appends one
baseline run and one optimized run to ``inference_metrics.json`` in the benchmark folder
(default ``./inference_benchmarks``), regenerates ``inference_metrics.csv`` from all runs and
redraws ``optimization_comparison.png`` and ``performance_over_time.png``. Runs accumulate
across invocations; the JSON file is read, extended and replaced atomically under an
exclusive lock on ``inference_metrics.json.lock``, so concurrent invocations never lose runs,
and a damaged JSON file is moved aside rather than overwritten.

Metrics of one run: total_time is the wall-clock time of ``Engine.generate`` (prefill plus
all new tokens), tokens_per_second = generated_length / total_time, time_per_token =
1000 * total_time / generated_length (ms); memory_used_mb is the engine's own buffers
(activations, scratch and the KV cache: ``Generation.peak_bytes``) in MB of 2**20 bytes;
peak_rss_mb is the process's peak resident memory so far. On the optimized run, speedup =
optimized tokens/s / non-optimized tokens/s and memory_reduction_pct =
100 * (1 - optimized memory / non-optimized memory).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from .fileio import atomic_file

try:  # POSIX; elsewhere the files are still replaced atomically, only not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

BASELINE_VERSION = "v0"
DEFAULT_VERSION = "v1"
DEFAULT_BENCHMARK_DIR = "./inference_benchmarks"
METRICS_JSON = "inference_metrics.json"
METRICS_CSV = "inference_metrics.csv"
COMPARISON_PNG = "optimization_comparison.png"
OVER_TIME_PNG = "performance_over_time.png"
#: The seed's CSV columns, always first and in this order; every other field follows.
SEED_CSV_COLUMNS = ("run_name", "timestamp", "optimized", "prompt_length", "generated_length", "total_time",
                    "tokens_per_second", "time_per_token", "memory_used_mb", "device")
MB = 2**20
BASELINE_COLOR = "#d62728"  # red
OPTIMIZED_COLOR = "#2ca02c"  # green
RULE = "=" * 70


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `run` subcommand (all its flags) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "run", help="generate from a text prompt; --benchmark compares non-optimized (v0) and optimized runs",
        description="Generate from a prompt. With --benchmark, run the non-optimized engine (v0, no KV cache) "
                    "and then the optimized one (--version) on the same prompt, seed and sampling settings, and "
                    "accumulate the metrics (JSON, CSV) and plots in --benchmark-dir.")
    p.add_argument("--model", "--checkpoint", dest="model",
                   default=os.environ.get("JSON_PATH", "dump_minimind/minimind.json"),
                   help="model: a .json (seed format) or .safetensors file, a Hugging Face folder, or a PyTorch "
                        "checkpoint (.pt; config from --config or config.json beside it) (default: $JSON_PATH or "
                        "dump_minimind/minimind.json); a tokenizer.json in the folder or beside the file is used "
                        "for text")
    p.add_argument("--config", metavar="JSON", default=None,
                   help="config of a PyTorch checkpoint: a config.json path or inline JSON ('{\"hidden_size\": ...}')")
    prompts = p.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", help="prompt text (byte-level tokens: the model needs vocab_size >= 256)")
    prompts.add_argument("--prompt-ids", type=int, nargs="+", metavar="ID", help="the prompt as token ids")
    prompts.add_argument("--prompt-file", metavar="FILE", help="a batch of prompts: one per non-empty line")
    prompts.add_argument("--prompts", nargs="+", metavar="TEXT", help="a batch of prompts")
    p.add_argument("--max-new-tokens", dest="max_length", type=_int_at_least(1), default=argparse.SUPPRESS,
                   help="the same as --max-length")
    p.add_argument("--max-length", type=_int_at_least(1), default=100,
                   help="new tokens to generate (default 100; capped by max_position_embeddings - prompt length)")
    p.add_argument("--temperature", type=_nonnegative_float, default=1.0, help="sampling temperature, 0: greedy "
                   "(default 1.0)")
    p.add_argument("--greedy", dest="temperature", action="store_const", const=0.0,
                   help="greedy decoding (the same as --temperature 0)")
    p.add_argument("--top-k", type=_int_at_least(0), default=50, help="top-k sampling, 0: off (default 50)")
    p.add_argument("--top-p", type=float, default=0.95, help="top-p (nucleus) sampling in (0, 1] (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every run (default 0)")
    p.add_argument("--device", default="cpu", help="device (default cpu; this build runs on cpu only)")
    p.add_argument("--threads", type=_int_at_least(0), default=0, help="engine threads (default 0: all CPUs)")
    p.add_argument("--version", default=DEFAULT_VERSION,
                   help=f"KV-cache version of the optimized run, or of the plain run (default {DEFAULT_VERSION}; "
                        "see `celerinfer versions`)")
    p.add_argument("--benchmark", action="store_true",
                   help=f"compare non-optimized ({BASELINE_VERSION}) and optimized runs and record the metrics")
    p.add_argument("--benchmark-dir", default=DEFAULT_BENCHMARK_DIR,
                   help=f"where the metrics and plots accumulate (default {DEFAULT_BENCHMARK_DIR})")
    p.add_argument("--delay", type=_nonnegative_float, default=0.0, help="seconds to wait between prompts "
                   "(default 0)")
    p.add_argument("--warmup", type=_int_at_least(0), default=1,
                   help="untimed warm-up generations before each timed benchmark run (default 1)")
    p.add_argument("--plot-scope", choices=("all", "latest"), default="all",
                   help="comparison plot: mean over all runs in the file (default) or the latest pair only")
    p.set_defaults(func=cmd_run)
    return p


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone `celerinfer` parser holding only the `run` subcommand."""
    parser = argparse.ArgumentParser(prog="celerinfer")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


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


def printable(text: str, limit: int | None = None) -> str:
    """Text safe for one terminal line: control and other non-printable characters escaped
    (newline as \\n), cut to `limit` characters with '...'."""
    out = []
    for ch in text:
        if unicodedata.category(ch)[0] == "C" or ch in "\u2028\u2029":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch) or
                       (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    result = "".join(out)
    if limit is not None and len(result) > limit:
        result = result[: max(limit - 3, 0)] + "..."
    return result


def _mb_text(value_mb: float | None) -> str:
    if value_mb is None:
        return "n/a"
    return f"{value_mb:.1f} MB" if value_mb >= 100 else f"{value_mb:.3f} MB"


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------

@dataclass
class Prompt:
    """One prompt: its text (None for --prompt-ids) and token ids."""

    text: str | None
    ids: list[int]


def _read_prompt_file(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such prompt file: {file}")
    with open(file, encoding="utf-8") as fh:
        lines = [line.strip() for line in fh]
    prompts = [line for line in lines if line]
    if not prompts:
        raise ValueError(f"prompt file {file} has no non-empty lines")
    return prompts


def resolve_prompts(args, tokenizer, vocab_size: int) -> list[Prompt]:
    """The prompts the arguments ask for, tokenized and checked against the vocabulary."""
    if args.prompt_ids is not None:
        ids = [int(i) for i in args.prompt_ids]
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(f"--prompt-ids must be in [0, {vocab_size}) for this model (vocab_size {vocab_size}); "
                             f"got {bad[:5]}")
        return [Prompt(None, ids)]
    if args.prompt is not None:
        texts = [args.prompt]
    elif args.prompts is not None:
        texts = list(args.prompts)
    elif args.prompt_file is not None:
        texts = _read_prompt_file(args.prompt_file)
    else:
        raise ValueError("give a prompt: --prompt, --prompt-ids, --prompt-file or --prompts")
    result = []
    for n, text in enumerate(texts, 1):
        if text == "":
            raise ValueError("the prompt is empty" if len(texts) == 1 else f"prompt {n} is empty")
        result.append(Prompt(text, tokenizer.encode(text)))
    return result


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


# --------------------------------------------------------------------------------------------
# Metrics store: inference_metrics.json (+ .csv, plots)
# --------------------------------------------------------------------------------------------

def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _atomic_write(path: Path, write) -> None:
    """Write through `write(fh)` into a temporary file beside `path`, then os.replace it."""
    with atomic_file(path, newline="") as fh:
        write(fh)


def _atomic_savefig(figure, path: Path) -> None:
    with atomic_file(path, "wb") as fh:
        figure.savefig(fh, format="png", dpi=100)


def json_text(value, indent: int = 2, _level: int = 0) -> str:
    """JSON like ``json.dumps(value, indent=indent)``, except that lists of plain values (token
    ids) stay on one line. Non-finite floats are refused (write them as null)."""
    if isinstance(value, dict) and value:
        pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
        items = [f"{inner}{json.dumps(str(k))}: {json_text(v, indent, _level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)) and value and any(isinstance(v, (dict, list, tuple)) for v in value):
        pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
        return "[\n" + ",\n".join(inner + json_text(v, indent, _level + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, allow_nan=False, separators=(", ", ": "))


def _runs_problem(data) -> str | None:
    """Why `data` is not a metrics document ({"runs": [run objects]}), or None when it is."""
    if not isinstance(data, dict):
        return f"the top level is a JSON {type(data).__name__}, not an object"
    if not isinstance(data.get("runs"), list):
        return 'there is no "runs" list'
    if not all(isinstance(run, dict) for run in data["runs"]):
        return 'an entry of "runs" is not an object'
    return None


class MetricsStore:
    """The benchmark folder: inference_metrics.json (all runs), its CSV export and the plots.

    Every change happens under an exclusive lock on ``inference_metrics.json.lock``: read the
    runs, append, write the JSON and CSV to temporary files and os.replace them, so a reader
    always sees a complete file and concurrent writers never lose each other's runs.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.json_path = self.directory / METRICS_JSON
        self.csv_path = self.directory / METRICS_CSV
        self.lock_path = self.directory / (METRICS_JSON + ".lock")
        self.comparison_path = self.directory / COMPARISON_PNG
        self.over_time_path = self.directory / OVER_TIME_PNG

    @contextlib.contextmanager
    def locked(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _move_aside(self, reason: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.directory / f"{METRICS_JSON}.corrupt-{stamp}"
        n = 1
        while aside.exists():
            n += 1
            aside = self.directory / f"{METRICS_JSON}.corrupt-{stamp}-{n}"
        os.replace(self.json_path, aside)
        _warn(f"{self.json_path} is damaged ({reason}); moved it to {aside} and started a new metrics file")
        return aside

    def _read_locked(self) -> dict:
        """The metrics document (call with the lock held); a damaged file is moved aside."""
        if not self.json_path.exists():
            return {"runs": []}
        try:
            data = json.loads(self.json_path.read_text(encoding="utf-8"))
            problem = _runs_problem(data)
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8: {exc.reason}"
        except ValueError as exc:
            problem = f"not valid JSON: {exc}"
        if problem is not None:
            self._move_aside(problem)
            return {"runs": []}
        return data

    def _write_locked(self, data: dict) -> None:
        data = _finite_or_none(data)
        text = json_text(data) + "\n"
        _atomic_write(self.json_path, lambda fh: fh.write(text))
        write_csv(data["runs"], self.csv_path)

    def read_runs(self) -> list[dict]:
        """All recorded runs (a damaged file is moved aside and yields none)."""
        with self.locked():
            return list(self._read_locked()["runs"])

    def append(self, runs: list[dict]) -> list[dict]:
        """Append runs to the JSON file, rewrite the CSV from all runs; return all runs."""
        with self.locked():
            data = self._read_locked()
            data["runs"].extend(runs)
            self._write_locked(data)
            return list(data["runs"])

    def refresh_plots(self, scope: str = "all") -> dict:
        """Redraw both plots from every recorded run; returns the comparison summary."""
        with self.locked():
            runs = self._read_locked()["runs"]
            summary = plot_comparison(runs, self.comparison_path, scope=scope)
            plot_over_time(runs, self.over_time_path)
            return summary


def load_metrics(directory: str | os.PathLike = DEFAULT_BENCHMARK_DIR) -> list[dict]:
    """The runs recorded in `directory`/inference_metrics.json (read-only; [] when absent)."""
    path = Path(directory) / METRICS_JSON
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    problem = _runs_problem(data)
    if problem is not None:
        raise ValueError(f"{path} is not a metrics file: {problem}")
    return data["runs"]


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return printable(value)  # one spreadsheet row per run: control characters escaped
    return str(value)


def _flatten(run: dict) -> dict:
    flat = {}
    for key, value in run.items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                flat[f"{key}.{sub}"] = sub_value
        else:
            flat[key] = value
    return flat


def csv_text(runs: list[dict]) -> str:
    """All runs as CSV: the seed's columns first, then every other field (nested objects as
    `key.subkey`, lists as JSON), in first-seen order; booleans as true/false, null as empty."""
    rows = [_flatten(run) for run in runs]
    columns = list(SEED_CSV_COLUMNS)
    seen = set(columns)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def write_csv(runs: list[dict], path: str | os.PathLike) -> None:
    text = csv_text(runs)
    _atomic_write(Path(path), lambda fh: fh.write(text))


# --------------------------------------------------------------------------------------------
# Plots (matplotlib Figure objects on the Agg canvas; no pyplot state)
# --------------------------------------------------------------------------------------------

def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _usable(run: dict) -> bool:
    return isinstance(run.get("optimized"), bool) and _number(run.get("tokens_per_second")) is not None


def _latest_pair(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """The last optimized run and the baseline of its pair (or the last of each kind)."""
    optimized = [r for r in runs if r["optimized"]]
    baseline = [r for r in runs if not r["optimized"]]
    if optimized:
        last = optimized[-1]
        partner = [r for r in baseline if last.get("pair_id") is not None and r.get("pair_id") == last.get("pair_id")]
        return (partner[-1:] or baseline[-1:]), [last]
    return baseline[-1:], []


def comparison_summary(runs: list[dict], scope: str = "all") -> dict:
    """What the comparison plot shows: per kind (baseline/optimized) the mean and standard
    deviation of each metric over the selected runs, their count and versions, the speedup
    (mean optimized tokens/s / mean baseline tokens/s) and the memory reduction in %."""
    if scope not in ("all", "latest"):
        raise ValueError(f"scope must be 'all' or 'latest', got {scope!r}")
    usable = [r for r in runs if _usable(r)]
    if scope == "latest":
        baseline, optimized = _latest_pair(usable)
    else:
        baseline = [r for r in usable if not r["optimized"]]
        optimized = [r for r in usable if r["optimized"]]
    import numpy as np

    def describe(selected):
        out = {"n": len(selected), "versions": sorted({str(r.get("version")) for r in selected})}
        for key in ("tokens_per_second", "time_per_token", "total_time", "memory_used_mb"):
            values = [v for v in (_number(r.get(key)) for r in selected) if v is not None]
            out[key] = float(np.mean(values)) if values else None
            out[key + "_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0 if values else None
        return out

    base, opt = describe(baseline), describe(optimized)
    speedup = None
    if base["tokens_per_second"] and opt["tokens_per_second"] is not None:
        speedup = opt["tokens_per_second"] / base["tokens_per_second"]
    reduction = None
    if base["memory_used_mb"] and opt["memory_used_mb"] is not None:
        reduction = 100.0 * (1.0 - opt["memory_used_mb"] / base["memory_used_mb"])
    if scope == "latest":
        pair = (optimized or baseline)
        name = pair[0].get("pair_id") or pair[0].get("run_name") if pair else None
        title = f"latest pair ({name})" if name else "latest pair (no runs yet)"
    else:
        title = f"mean of {base['n']} non-optimized / {opt['n']} optimized runs"
    return {"scope": scope, "title": title, "baseline": base, "optimized": opt, "speedup": speedup,
            "memory_reduction_pct": reduction}


def plot_comparison(runs: list[dict], path: str | os.PathLike, scope: str = "all") -> dict:
    """optimization_comparison.png: tokens/s, time/token, total time and memory, non-optimized
    vs optimized bars (with the standard deviation when several runs are averaged), the speedup
    and the memory reduction annotated. Returns :func:`comparison_summary`."""
    from matplotlib.figure import Figure

    summary = comparison_summary(runs, scope)
    base, opt = summary["baseline"], summary["optimized"]
    labels = [f"Non-optimized\n({', '.join(base['versions']) or BASELINE_VERSION})",
              f"Optimized\n({', '.join(opt['versions']) or '-'})"]
    panels = [("tokens_per_second", "Tokens per Second", "tokens/s (higher is better)"),
              ("time_per_token", "Time per Token", "ms (lower is better)"),
              ("total_time", "Total Generation Time", "s (lower is better)"),
              ("memory_used_mb", "Memory Usage", "MB, engine buffers incl. KV cache (lower is better)")]
    figure = Figure(figsize=(12, 9))
    try:
        axes = figure.subplots(2, 2).ravel()
        for ax, (key, name, unit) in zip(axes, panels):
            values = [base[key], opt[key]]
            errors = [base[key + "_std"] or 0.0, opt[key + "_std"] or 0.0]
            heights = [v if v is not None else 0.0 for v in values]
            show_errors = max(base["n"], opt["n"]) > 1
            bars = ax.bar(labels, heights, color=[BASELINE_COLOR, OPTIMIZED_COLOR],
                          yerr=errors if show_errors else None, capsize=6, alpha=0.85)
            tops = [h + (e if show_errors else 0.0) for h, e in zip(heights, errors)]
            for bar, value, top in zip(bars, values, tops):
                ax.annotate("n/a" if value is None else f"{value:.4g}", (bar.get_x() + bar.get_width() / 2, top),
                            ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
            ax.set_ylim(0, (max(tops) or 1.0) * 1.35)  # room for the labels and the annotation
            ax.set_title(name)
            ax.set_ylabel(unit)
            ax.grid(axis="y", alpha=0.3)
            note = None
            if key == "tokens_per_second" and summary["speedup"] is not None:
                note = f"speedup {summary['speedup']:.2f}x"
            elif key == "memory_used_mb" and summary["memory_reduction_pct"] is not None:
                note = f"memory reduction {summary['memory_reduction_pct']:.1f}%"
            if note:
                ax.text(0.5, 0.95, note, transform=ax.transAxes, ha="center", va="top", fontsize=12,
                        fontweight="bold", bbox={"boxstyle": "round", "facecolor": "#fff8dc", "alpha": 0.9})
        bars_note = "; error bars: standard deviation" if max(base["n"], opt["n"]) > 1 else ""
        figure.suptitle(f"Optimized vs non-optimized inference: {summary['title']}{bars_note}", fontsize=14)
        figure.tight_layout(rect=(0, 0, 1, 0.96))
        _atomic_savefig(figure, Path(path))
    finally:
        figure.clear()
    return summary


def plot_over_time(runs: list[dict], path: str | os.PathLike) -> None:
    """performance_over_time.png: tokens/s of every optimized (green) and non-optimized (red)
    run against its position in the recording order."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    usable = [(n, r) for n, r in enumerate(runs, 1) if _usable(r)]
    figure = Figure(figsize=(11, 5.5))
    try:
        ax = figure.subplots()
        for optimized, color, label, marker in ((True, OPTIMIZED_COLOR, "Optimized", "o"),
                                                (False, BASELINE_COLOR, "Non-optimized", "s")):
            points = [(n, _number(r["tokens_per_second"])) for n, r in usable if r["optimized"] is optimized]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker=marker, color=color, label=f"{label} ({len(points)} runs)", linewidth=1.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("run (recording order)")
        ax.set_ylabel("tokens per second")
        ax.set_title(f"Performance over time ({len(usable)} runs)")
        ax.grid(alpha=0.3)
        if usable:
            ax.legend()
            ax.set_ylim(bottom=0)
        figure.tight_layout()
        _atomic_savefig(figure, Path(path))
    finally:
        figure.clear()


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

@dataclass
class Setup:
    """What every run of one invocation shares."""

    args: argparse.Namespace
    model: object
    tokenizer: object
    model_info: dict


def _generate(engine, ids: list[int], max_new_tokens: int, args):
    start = time.perf_counter()
    gen = engine.generate([ids], max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          seed=args.seed)
    return gen, time.perf_counter() - start


def _text_of(tokenizer, ids) -> str | None:
    if getattr(tokenizer, "covers_bytes", True):
        return tokenizer.decode(ids)
    return None


def measure(setup: Setup, engine, prompt: Prompt, max_new_tokens: int, *, optimized: bool, pair_id: str,
            warmup: int) -> tuple[dict, object]:
    """One benchmark run: `warmup` untimed generations, then a timed one; its record.

    pair_id is ``run_<unix time>_<short uuid>``, shared by the two runs of one benchmark; the
    run is named ``run_<unix time>_<optimized|baseline>_<short uuid>``."""
    args = setup.args
    for _ in range(warmup):
        _generate(engine, prompt.ids, max_new_tokens, args)
    gen, seconds = _generate(engine, prompt.ids, max_new_tokens, args)
    new_ids = [int(t) for t in gen.new_tokens[0]]
    generated = len(new_ids)
    _, stamp, short = pair_id.split("_", 2)
    record = {
        "run_name": f"run_{stamp}_{'optimized' if optimized else 'baseline'}_{short}",
        "timestamp": time.time(),
        "optimized": optimized,
        "prompt_length": len(prompt.ids),
        "generated_length": generated,
        "total_time": seconds,
        "tokens_per_second": generated / seconds if seconds > 0 else None,
        "time_per_token": 1e3 * seconds / generated if generated else None,
        "memory_used_mb": gen.peak_bytes / MB,
        "device": args.device,
        "pair_id": pair_id,
        "version": engine.version["name"],
        "version_description": engine.version["description"],
        "prompt": prompt.text if prompt.text is not None else list(prompt.ids),
        "prompt_ids": list(prompt.ids),
        "generated_text": _text_of(setup.tokenizer, new_ids),
        "generated_ids": new_ids,
        "peak_rss_mb": gen.peak_rss_bytes / MB,
        "max_seq_len": engine.max_seq_len,
        "kv_cache_mb": gen.kv_cache_bytes / MB,
        "ttft_ms": gen.timings["ttft_ms"],
        "engine_decode_tokens_per_s": gen.timings["decode_tokens_per_s"],
        "model": setup.model_info["path"],
        "model_config": setup.model_info["config"],
        "tokenizer": getattr(setup.tokenizer, "name", type(setup.tokenizer).__name__),
        "sampling": {"max_length": args.max_length, "max_new_tokens": max_new_tokens,
                     "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed},
        "threads": setup.model_info["threads"],
        "warmup_runs": warmup,
        "celerinfer_version": setup.model_info["package_version"],
    }
    return record, gen


def compare_pair(baseline: dict, optimized: dict) -> None:
    """Put speedup, memory_reduction_pct and same_tokens_as_baseline on the optimized record."""
    base_tps, opt_tps = _number(baseline.get("tokens_per_second")), _number(optimized.get("tokens_per_second"))
    base_mem, opt_mem = _number(baseline.get("memory_used_mb")), _number(optimized.get("memory_used_mb"))
    optimized["speedup"] = opt_tps / base_tps if base_tps and opt_tps is not None else None
    optimized["memory_reduction_pct"] = 100.0 * (1.0 - opt_mem / base_mem) if base_mem and opt_mem is not None else None
    optimized["baseline_run_name"] = baseline["run_name"]
    optimized["same_tokens_as_baseline"] = baseline.get("generated_ids") == optimized.get("generated_ids")


def _print_run(label: str, record: dict, tokenizer, prompt: Prompt) -> None:
    _say(f"  Total Time: {record['total_time']:.3f} s")
    tps = record["tokens_per_second"]
    _say(f"  Tokens/Second: {tps:.1f}" if tps is not None else "  Tokens/Second: n/a")
    tpt = record["time_per_token"]
    _say(f"  Time/Token: {tpt:.2f} ms" if tpt is not None else "  Time/Token: n/a")
    _say(f"  Memory Used: {_mb_text(record['memory_used_mb'])} (engine buffers incl. KV cache "
         f"{_mb_text(record['kv_cache_mb'])}; process peak RSS {record['peak_rss_mb']:.1f} MB)")
    _say(f"  Generated: {_display(tokenizer, prompt, record['generated_ids'], limit=120)}")


def _display(tokenizer, prompt: Prompt, new_ids: list[int], limit: int | None = None) -> str:
    if prompt.text is not None and getattr(tokenizer, "covers_bytes", True):
        return printable(prompt.text + tokenizer.decode(new_ids), limit)
    return printable("ids " + " ".join(map(str, new_ids)), limit)


def _engine(setup: Setup, version: str, seq_len: int):
    """An engine sized for exactly this prompt plus its new tokens, so the memory of every
    version is measured for the same sequence (not for the model's longest one)."""
    from .engine import Engine

    return Engine(setup.model, version, device=setup.args.device, max_seq_len=seq_len)


def _benchmark_prompt(setup: Setup, prompt: Prompt, label: str, store: MetricsStore) -> tuple[dict, dict]:
    args = setup.args
    max_new = _new_token_budget(args.max_length, len(prompt.ids), setup.model.config.max_position_embeddings, label)
    engines = {"baseline": _engine(setup, BASELINE_VERSION, len(prompt.ids) + max_new),
               "optimized": _engine(setup, args.version, len(prompt.ids) + max_new)}
    stamp = int(time.time())
    pair_id = f"run_{stamp}_{uuid.uuid4().hex[:8]}"
    _say()
    _say(f"BENCHMARK RUN: {pair_id}")
    _say(RULE)
    shown = printable(prompt.text, 100) if prompt.text is not None else " ".join(map(str, prompt.ids))
    _say(f"Prompt: {shown} ({len(prompt.ids)} tokens; {max_new} new tokens)")
    _say()
    _say(f"[{engines['baseline'].version['name']}] Running NON-OPTIMIZED inference...")
    baseline, _ = measure(setup, engines["baseline"], prompt, max_new, optimized=False, pair_id=pair_id,
                          warmup=args.warmup)
    _print_run("baseline", baseline, setup.tokenizer, prompt)
    _say()
    _say(f"[{engines['optimized'].version['name']}] Running OPTIMIZED inference...")
    optimized, _ = measure(setup, engines["optimized"], prompt, max_new, optimized=True, pair_id=pair_id,
                           warmup=args.warmup)
    _print_run("optimized", optimized, setup.tokenizer, prompt)
    compare_pair(baseline, optimized)
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
    total = len(store.append([baseline, optimized]))
    _say(f"Recorded 2 runs in {store.json_path} ({total} in all)")
    return baseline, optimized


def _plain_prompt(setup: Setup, prompt: Prompt, label: str) -> None:
    args = setup.args
    max_new = _new_token_budget(args.max_length, len(prompt.ids), setup.model.config.max_position_embeddings, label)
    engine = _engine(setup, args.version, len(prompt.ids) + max_new)
    gen, seconds = _generate(engine, prompt.ids, max_new, args)
    new_ids = [int(t) for t in gen.new_tokens[0]]
    n = len(new_ids)
    _say()
    if prompt.text is not None:
        _say(f"Prompt: {printable(prompt.text)} ({len(prompt.ids)} tokens)")
    _say(f"Prompt ids: {' '.join(map(str, prompt.ids))}")
    text = _text_of(setup.tokenizer, new_ids)
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


def _validate(args) -> None:
    if args.max_length < 1:
        raise ValueError(f"--max-length must be >= 1, got {args.max_length}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {args.top_k}")
    if not (0 < args.top_p <= 1):
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.delay < 0 or not math.isfinite(args.delay):
        raise ValueError(f"--delay must be >= 0, got {args.delay}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    from .engine import version_names

    names = version_names()
    if args.version not in names:
        raise ValueError(f"unknown --version {args.version!r}: choose one of {', '.join(names)}")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("celerinfer")
    except PackageNotFoundError:
        return "unknown"


def _summary(pairs: list[tuple[dict, dict]]) -> None:
    import numpy as np

    def stat(values, unit, fmt="{:.1f}"):
        values = [v for v in values if v is not None]
        if not values:
            return "n/a"
        text = fmt.format(float(np.mean(values))) + unit
        if len(values) > 1:
            text += (f" (sd {fmt.format(float(np.std(values, ddof=1)))}, min {fmt.format(min(values))}, "
                     f"max {fmt.format(max(values))})")
        return text

    _say()
    _say(f"SUMMARY over {len(pairs)} prompts")
    _say(f"  Non-optimized tokens/s: {stat([b['tokens_per_second'] for b, _ in pairs], '')}")
    _say(f"  Optimized tokens/s:     {stat([o['tokens_per_second'] for _, o in pairs], '')}")
    _say(f"  Speedup:                {stat([o['speedup'] for _, o in pairs], 'x', '{:.2f}')}")
    _say(f"  Memory reduction:       {stat([o['memory_reduction_pct'] for _, o in pairs], '%')}")


def _finish_benchmark(store: MetricsStore, scope: str) -> None:
    _say()
    _say("Generating comparison plots and data...")
    try:
        summary = store.refresh_plots(scope)
    except Exception as exc:  # the metrics are already safe on disk; a plot problem must not lose them
        _warn(f"could not draw the plots: {type(exc).__name__}: {exc}")
    else:
        _say(f"Comparison plot saved to: {store.comparison_path} ({summary['title']})")
        _say(f"Performance over time plot saved to: {store.over_time_path}")
    _say(f"Metrics exported to CSV: {store.csv_path}")


def _run(args) -> int:
    from tqdm import tqdm

    from . import set_num_threads
    from .engine import versions
    from .model import config_to_dict, load
    from .tokenizer import get_tokenizer

    _validate(args)
    if args.device != "cpu":
        raise ValueError(f"device {args.device!r} is not available: this build runs on 'cpu' only")
    model = load(args.model, _config_arg(args.config))
    tokenizer = get_tokenizer(args.model, model.config.vocab_size)
    prompts = resolve_prompts(args, tokenizer, model.config.vocab_size)
    max_pos = model.config.max_position_embeddings
    for n, prompt in enumerate(prompts, 1):
        if len(prompt.ids) >= max_pos:
            where = "the prompt" if len(prompts) == 1 else f"prompt {n}"
            raise ValueError(f"{where} has {len(prompt.ids)} tokens: no room to generate within the model's "
                             f"max_position_embeddings ({max_pos})")
    if args.threads:
        set_num_threads(args.threads)
    setup = Setup(args, model, tokenizer, {"path": str(args.model), "config": config_to_dict(model.config),
                                           "threads": _threads_in_use(), "package_version": _package_version()})
    store = None
    if args.benchmark:
        store = MetricsStore(args.benchmark_dir)
        _say(f"BENCHMARK MODE: Comparing optimized ({args.version}) vs non-optimized ({BASELINE_VERSION}) inference")
        _say(RULE)
        _say(f"Model: {args.model} ({model.config}); device {args.device}; {len(prompts)} prompt(s); "
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
                baseline, optimized = _benchmark_prompt(setup, prompt, label, store)
                pairs.append((baseline, optimized))
            else:
                _plain_prompt(setup, prompt, label)
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
        if pairs or store.json_path.exists():
            _finish_benchmark(store, args.plot_scope)
        if not interrupted:
            _say()
            _say(f"Benchmark complete! Results saved to: {store.directory}")
    return 130 if interrupted else 0


def _config_arg(text: str | None):
    """--config: None, inline JSON (starts with '{') or a path."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config: not valid JSON ({exc})") from None


def _threads_in_use() -> int | None:
    try:
        from . import get_num_threads

        return int(get_num_threads())
    except Exception:  # pragma: no cover
        return None


def cmd_run(args) -> int:
    """The `run` subcommand: 0 on success, 2 on bad input (a message, no traceback), 130 when
    interrupted (the runs recorded so far stay in the files)."""
    from .model import FormatError

    try:
        return _run(args)
    except (ValueError, TypeError, OSError, ImportError, FormatError) as exc:
        print(f"celerinfer run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("celerinfer run: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
