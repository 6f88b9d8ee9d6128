"""The benchmark suite: latency, memory, phase, perplexity and roofline, one JSONL record per
(benchmark, version, setting), appended as soon as it is measured so that Ctrl-C or a crash
keeps everything measured before it."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .blas_threads import one_blas_thread
from ..engine import PHASES, Engine
from ..io.model_files import load
from ..model import ModelConfig, config_to_dict, random_model, random_tokens
from ..registry import versions
from ..results import stats
from ..results.noise import LoadWatch, noise_verdict
from ..results.schema import make_record, new_run_id
from ..results.seed_fields import seed_fields
from ..results.store import append_record, check_writable
from ..runtime import get_num_threads, set_num_threads
from . import calibration, roofline
from .config import benchmark_names, model_config_kwargs
from .perplexity import load_windows, next_token_metrics
from .presets import PRESETS


class Interrupted(Exception):
    """Ctrl-C during a benchmark: the records measured so far are kept."""


class BenchRun:
    """One invocation of the suite: a model, a config, a run id, a log file."""

    def __init__(self, config: dict, log_file: str | Path | None = None, progress: bool | None = None, *,
                 run_id: str | None = None, extra: dict | None = None, write: bool = True):
        """run_id: the records' run id (default: a new one); extra: fields added to every record
        (a sweep cell's ``sweep``); write=False keeps the records in ``.records`` only (a sweep's
        worker: the sweep's driver stores them)."""
        self.config = config
        self.log_file = Path(log_file or config["log_file"])
        self.run_id = run_id or new_run_id()
        self.extra = dict(extra or {})
        self.write = write
        if write:  # before measuring: an unwritable log would lose the whole run
            check_writable(self.log_file)
        if config["threads"]:
            set_num_threads(int(config["threads"]))
        self.threads = get_num_threads()
        self.model, self.model_info = self._load_model()
        self.version_flags = {v["name"]: v for v in versions()}
        self.records: list[dict] = []
        self.progress = progress
        #: the packed weight bytes of the engines this run built (one weight format per run)
        self.packed_weight_bytes: int | None = None

    # ---- setup ---------------------------------------------------------------------------

    def _load_model(self):
        cfg = self.config
        if cfg["model"]:
            model = load(cfg["model"])
            name, seed = str(cfg["model"]), None
        elif cfg.get("model_config"):  # seed 002's own shape, random weights
            name, seed = "model_config", cfg["model_seed"]
            model = random_model(ModelConfig(**model_config_kwargs(cfg["model_config"])), seed=seed)
        else:
            name, seed = cfg["preset"], cfg["model_seed"]
            model = random_model(ModelConfig(**PRESETS[name]["model"]), seed=seed)
        info = {"name": name, "config": config_to_dict(model.config), "num_parameters": model.config.num_parameters,
                "f32_weight_bytes": 4 * model.config.num_parameters, "weight_dtype": cfg["weight_dtype"],
                "matmul_precision": cfg["matmul_precision"], "seed": seed}
        return model, info

    def _engine(self, version: str, max_seq_len: int, weight_dtype: str | None = None) -> Engine:
        weight_dtype = weight_dtype or self.config["weight_dtype"]
        engine = Engine(self.model, version, device=self.config.get("device", "cpu"), max_seq_len=max_seq_len,
                        weight_dtype=None if weight_dtype == "stored" else weight_dtype,
                        matmul_precision=self.config["matmul_precision"])
        self.packed_weight_bytes = engine.packed_weight_bytes
        self.model_info["matrix_formats"] = engine.matrix_formats
        self.model_info["kernels"] = engine.kernels  # (chosen by measured speed: the record says which ran)
        return engine

    @property
    def compute_weight_dtype(self) -> str:
        """The format most linear layers compute in: the configured one, or for "stored" the
        model's commonest matrix format (the roofline's weight bytes per value), known once an
        engine was built."""
        if self.config["weight_dtype"] != "stored":
            return self.config["weight_dtype"]
        formats = self.model_info.get("matrix_formats") or {"f32": 1}
        return max(formats, key=formats.get)

    def _prompt(self, length: int) -> np.ndarray:
        return random_tokens(self.config["batch_size"], length, self.model.config.vocab_size, seed=self.config["seed"])

    def _record(self, benchmark: str, version: str | None, params: dict, metrics: dict, status: str = "ok",
                noise: dict | None = None) -> dict:
        """Makes, stores and keeps one record; `noise`: the noise guard's verdict on it."""
        flags = self.version_flags.get(version) if version else None
        record = make_record(benchmark, version, flags, self.model_info, params, metrics, self.run_id, self.threads,
                             status=status, **seed_fields(benchmark, flags, self.model_info, params, metrics),
                             **({"noise": noise} if noise is not None else {}), **self.extra)
        if self.write:
            append_record(self.log_file, record)
        self.records.append(record)
        return record

    def _bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="run", disable=self.progress is False, leave=False, dynamic_ncols=True)

    @contextmanager
    def _interruptible(self):
        """Turns Ctrl-C inside a measurement into `Interrupted` after the caller recorded what it had."""
        self.interrupted = False
        try:
            yield
        except KeyboardInterrupt:
            self.interrupted = True

    def _generations(self, version: str, prompt_length: int, new_tokens: int, bar) -> list:
        """Warm-up runs, then num_measure_runs timed generations (fewer if interrupted)."""
        cfg = self.config
        limit = self.model.config.max_position_embeddings
        if prompt_length + new_tokens > limit:
            raise ValueError(f"prompt_length {prompt_length} + T {new_tokens} exceeds the model's "
                             f"max_position_embeddings ({limit})")
        engine = self._engine(version, prompt_length + new_tokens)
        ids = self._prompt(prompt_length)
        runs = []
        with self._interruptible():
            for _ in range(cfg["num_warmup_runs"]):
                engine.generate(ids, new_tokens, seed=cfg["seed"])
            for _ in range(cfg["num_measure_runs"]):
                runs.append(engine.generate(ids, new_tokens, seed=cfg["seed"]))
                bar.update(1)
        return runs

    def _params(self, **extra) -> dict:
        cfg = self.config
        return {"prompt_length": cfg["prompt_length"], "batch_size": cfg["batch_size"], "seed": cfg["seed"],
                "num_warmup_runs": cfg["num_warmup_runs"], "num_measure_runs": cfg["num_measure_runs"], **extra}

    def _status(self) -> str:
        return "interrupted" if self.interrupted else "ok"

    def _stop_if_interrupted(self) -> None:
        if self.interrupted:
            raise Interrupted()

    # ---- benchmarks ----------------------------------------------------------------------

    def run(self, benchmarks) -> list[dict]:
        """Runs the named benchmarks ('all' = every one) and returns the records written."""
        names = benchmark_names(benchmarks)
        with one_blas_thread():  # (blas_threads.py says why)
            if {"latency", "memory", "phase"} & set(names):
                self.generation_benchmarks(names)
            if "perplexity" in names:
                self.perplexity()
            if "roofline" in names:
                self.roofline()
        return self.records

    def generation_benchmarks(self, names) -> None:
        """latency and memory at every T, phase at T*: one set of timed generations serves all three."""
        cfg = self.config
        t_values = sorted(set(cfg["T_values"]) | ({cfg["T_star"]} if "phase" in names else set()))
        if not {"latency", "memory"} & set(names):
            t_values = [cfg["T_star"]]
        with self._bar(len(cfg["versions"]) * len(t_values) * cfg["num_measure_runs"], "generation") as bar:
            for version in cfg["versions"]:
                for T in t_values:
                    bar.set_postfix_str(f"{version} T={T}")
                    with LoadWatch() as watch:
                        runs = self._generations(version, cfg["prompt_length"], T, bar)
                    if runs:
                        params = self._params(T=T)
                        noise = noise_verdict(run_totals_ns(runs), watch.load(), self.threads)
                        if "latency" in names and T in cfg["T_values"]:
                            self._record("latency", version, params, latency_metrics(runs, T, cfg["batch_size"]),
                                         self._status(), noise)
                        if "memory" in names and T in cfg["T_values"]:
                            self._record("memory", version, params,
                                         memory_metrics(runs[-1], self.model_info, T, self.packed_weight_bytes),
                                         self._status())
                        if "phase" in names and T == cfg["T_star"]:
                            self._record("phase", version, params, phase_metrics(runs), self._status(), noise)
                    self._stop_if_interrupted()

    def perplexity(self) -> None:
        """Every (weight format, version) scored teacher-forced on the same windows, one token
        per step through the version's cache, as generation runs; the reference is the baseline
        version at the first weight format, scored first."""
        cfg, ppl = self.config, self.config["perplexity"]
        tokens, first_scored, source = load_windows(
            ppl["data"], ppl["num_sequences"], ppl["sequence_length"], self.model.config.vocab_size,
            stride=ppl["stride"], tokenizer=getattr(self.model, "tokenizer", None), seed=cfg["seed"])
        baseline = ppl["baseline_version"]
        formats = ppl["weight_dtypes"] or [cfg["weight_dtype"]]
        order = [(formats[0], baseline)] + [(w, v) for w in formats for v in cfg["versions"]
                                            if (w, v) != (formats[0], baseline)]
        params = {"data": source, "sequence_length": int(tokens.shape[1]), "num_sequences": int(tokens.shape[0]),
                  "stride": ppl["stride"] or int(tokens.shape[1]), "baseline_version": baseline,
                  "baseline_weight_dtype": formats[0], "prefill_length": 1, "seed": cfg["seed"]}
        reference = None
        with self._bar(len(order), "perplexity") as bar, self._interruptible():
            for weight_dtype, version in order:
                bar.set_postfix_str(f"{weight_dtype} {version}")
                engine = self._engine(version, tokens.shape[1], weight_dtype=weight_dtype)
                start = time.perf_counter()
                logits = engine.score(tokens, prefill_length=1)
                seconds = time.perf_counter() - start
                if reference is None:
                    reference = logits
                metrics = next_token_metrics(logits, reference, tokens, first_scored, seed=cfg["seed"])
                metrics["kv_cache_bytes_per_token"] = self._kv_bytes_per_token(engine, tokens[:1])
                metrics["score_tokens_per_s"] = tokens.size / seconds  # one token per step, as decoding
                self._record("perplexity", version, {**params, "weight_dtype": weight_dtype}, metrics)
                bar.update(1)
        self._stop_if_interrupted()

    @staticmethod
    def _kv_bytes_per_token(engine: Engine, window: np.ndarray) -> float:
        """The cache's bytes per cached token after the window's positions, as the engine
        reports them (what a merging cache kept whole included): a prefill of all but the
        last token, then one step."""
        written = window.shape[1] - 1
        return engine.generate(window[:, :-1], max_new_tokens=1, timing=False).kv_cache_bytes / written

    def measure_ceilings(self) -> dict:
        """This machine's ceilings, measured now, in this run: a ceiling cached from another
        moment (another load on a shared machine) would make the fractions meaningless."""
        cal = calibration.calibrate(threads=self.threads)
        calibration.save_calibration(cal, calibration.default_calibration_path())
        self._record("calibrate", None, {"threads": self.threads, "bytes": cal["triad_bytes"],
                                         "matmul_size": cal["matmul_size"]},
                     {"bandwidth_gbps": cal["bandwidth_gbps"], "read_bandwidth_gbps": cal["read_bandwidth_gbps"],
                      "bandwidth_ceiling_gbps": cal["bandwidth_ceiling_gbps"], "matmul_gflops": cal["matmul_gflops"]})
        return cal

    def roofline(self) -> None:
        cfg, rcfg = self.config, self.config["roofline"]
        cal = self.measure_ceilings()
        # the memory roof: the best triad or read-only stream (a ceiling), not the triad's median
        peak_gflops, peak_gbps = cal["matmul_gflops"]["median"], cal["bandwidth_ceiling_gbps"]
        P, T, B = rcfg["prompt_length"], rcfg["decode_tokens"], cfg["batch_size"]
        with self._bar(len(cfg["versions"]) * cfg["num_measure_runs"], "roofline") as bar:
            for version in cfg["versions"]:
                bar.set_postfix_str(version)
                with LoadWatch() as watch:
                    runs = self._generations(version, P, T, bar)
                if runs:
                    flags = self.version_flags[version]
                    load = watch.load()
                    wd = self.compute_weight_dtype
                    prefill = roofline.prefill_cost(self.model.config, flags, B, P, weight_dtype=wd)
                    # decode step i attends over P + i - 1 cached positions
                    decode_steps = [roofline.decode_cost(self.model.config, flags, B, P + i, weight_dtype=wd)
                                    for i in range(T - 1)]
                    decode = roofline.mean_cost(decode_steps)
                    prefill_ns = [r.step_table[0, 5] for r in runs]
                    # (the noise guard judges each run's whole phase: the decode steps of a run summed)
                    for phase, cost, times, per_run in (
                            ("prefill", prefill, prefill_ns, prefill_ns),
                            ("decode", decode, [t for r in runs for t in r.step_table[1:, 5]],
                             [r.step_table[1:, 5].sum() for r in runs])):
                        time = stats.summarize(times, unit="ms", raw_unit="ns")
                        metrics = {"flops": cost.flops, "bytes": cost.bytes, "time_ms": time, "by_op": cost.by_op,
                                   **roofline.achieved(cost, time["median"] / 1e3, peak_gflops, peak_gbps)}
                        self._record("roofline", version, {**self._params(T=T, phase=phase), "prompt_length": P},
                                     metrics, self._status(), noise_verdict(per_run, load, self.threads))
                self._stop_if_interrupted()


# ---- metrics from timed generations -----------------------------------------------------------

def run_totals_ns(runs) -> list[int]:
    """Each timed generation's total time (ns): the sum of its step table's totals."""
    return [int(r.step_table[:, 5].sum()) for r in runs]


def latency_metrics(runs, T: int, batch: int) -> dict:
    total = run_totals_ns(runs)
    ttft = [int(r.step_table[0, 5]) for r in runs]
    per_token = [int(t) for r in runs for t in r.step_table[1:, 5]]
    m = {"total_ms": stats.summarize(total), "ttft_ms": stats.summarize(ttft)}
    m["per_token_ms"] = stats.summarize(per_token) if per_token else None
    m["tokens_per_s"] = batch * T / (m["total_ms"]["median"] / 1e3)
    m["decode_tokens_per_s"] = batch / (m["per_token_ms"]["median"] / 1e3) if per_token else None
    return m


def memory_metrics(run, model_info: dict, T: int, packed_weight_bytes: int | None = None) -> dict:
    cached = run.prompt_length + run.new_tokens.shape[1] - 1 if run.kv_cache_bytes else 0
    batch = run.tokens.shape[0]
    return {"kv_cache_bytes": run.kv_cache_bytes, "kv_cache_capacity_bytes": run.kv_cache_capacity_bytes,
            "engine_bytes": run.peak_bytes, "f32_weight_bytes": model_info["f32_weight_bytes"],
            "packed_weight_bytes": packed_weight_bytes,
            "peak_rss_bytes": run.peak_rss_bytes,
            "kv_bytes_per_token": run.kv_cache_bytes / (cached * batch) if cached else 0.0}


def phase_metrics(runs) -> dict:
    per_run = np.array([r.step_table[:, : len(PHASES) + 1].sum(axis=0) for r in runs], dtype=np.int64)
    phases = {name: stats.summarize(per_run[:, i].tolist()) for i, name in enumerate(PHASES)}
    total = stats.summarize(per_run[:, len(PHASES)].tolist())
    # Shares of the summed time over all runs: they add up to at most 1, unlike ratios of medians.
    grand_total = per_run[:, len(PHASES)].sum()
    share = {name: float(per_run[:, i].sum() / grand_total) if grand_total else math.nan for i, name in enumerate(PHASES)}
    return {"phases_ms": phases, "total_ms": total, "phase_share": share}


def run_benchmarks(config: dict, benchmarks=("all",), log_file=None, progress=None) -> BenchRun:
    """Runs the suite; returns the BenchRun (its .records are the records written)."""
    bench = BenchRun(config, log_file=log_file, progress=progress)
    bench.run(benchmarks)
    return bench


__all__ = ["BenchRun", "Interrupted", "run_benchmarks"]
