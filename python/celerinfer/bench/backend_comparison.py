"""`celerinfer bench compare`: celerinfer against PyTorch eager and llama.cpp on the same weights.

For one model (a preset's random weights or a model file) and one thread count, every setup
(backend x weight format x KV cache) is timed the same way (:mod:`.backends`), in ``repeats``
rounds that each run every setup once (a warm-up, then a prefill of ``prompt_length`` tokens:
"pp", tokens/s = prompt_length / prefill time; then ``gen_length`` decode steps: "tg",
tokens/s = gen_length / their total time). Round-robin keeps the ratios fair on a shared
machine. The memory bandwidth is measured in the same run (a ``calibrate`` record, and a
short triad between rounds), so each decode speed is also expressed as the share of that
bandwidth its weight traffic uses.

Setups, in the order measured (references first, so each record can carry its ratios):

1. ``torch``: eager fp32 with a KV cache (:mod:`celerinfer.reference.torch_engine`), and when bf16 is
   among the weight dtypes, the model cast to bf16 (PyTorch's own bf16 path: oneDNN, on AMX
   tiles where the CPU has them), the same-format reference for celerinfer's bf16.
2. ``llama.cpp``: the GGUF export of the same weights in the format matching each celerinfer
   weight dtype (f32 -> f32, bf16 -> f16, int8 -> q8_0), with each KV cache type of
   ``llama_kv`` (f16: llama.cpp's default; q8_0 runs with flash attention, which llama.cpp
   needs for a quantized V cache).
3. ``celerinfer``: every weight dtype with ``v1`` (fp32 cache); the other versions (default v5
   fp16 and v2 INT8 caches) with the most compact weight dtype. Where the CPU has AMX, f32 and
   int8 with ``v1`` again at matmul precision "high" (bf16x3 prefill; :class:`celerinfer.Engine`),
   labelled "(high)": the same weights, a faster and slightly less exact prefill.

One ``compare`` record per setup (``docs/results_schema.md``), appended after the last round:
Ctrl-C stops the rounds and keeps every timed run so far.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import _core
from ..engine import WEIGHT_DTYPES, Engine, precision_changes_prefill
from ..formats import WEIGHT_FORMATS, format_of_gguf_type, weight_format
from ..io.gguf import FILE_TYPES, export_gguf
from ..model import ModelConfig, random_model, random_tokens
from ..results import stats
from ..results.noise import LoadWatch, combine_loads, noise_verdict
from ..results.speedup import Speedup, speedup
from . import backends, roofline
from .blas_threads import one_blas_thread
from .config import load_config
from .presets import PRESETS
from .runner import BenchRun

BENCHMARK = "compare"
DEFAULT_PRESET = "1b"
DEFAULT_PROMPT, DEFAULT_GEN, LONG_PROMPT = 512, 128, 2048
DEFAULT_VERSIONS = ("v1", "v5", "v2")
DEFAULT_LLAMA_KV = ("f16", "q8_0")
WARMUP_DECODE_TOKENS = 4
#: The one llama.cpp format of the comparison that the engine's table does not give: llama.cpp
#: runs f16 against celerinfer's bf16, since the GGUF export writes no bf16 and f16 has bf16's
#: two bytes per weight. Every other pairing comes from the C++ table's gguf_type (int8: Q8_0).
LLAMA_STAND_INS = {"bf16": "f16"}


def matching_gguf(weight_dtype: str) -> str | None:
    """The GGUF type llama.cpp runs against an engine weight format: the format's own GGUF type
    when the export writes it, else its stand-in (bf16: f16); None when llama.cpp has neither."""
    own = weight_format(weight_dtype).gguf_type.lower()
    return own if own in FILE_TYPES else LLAMA_STAND_INS.get(weight_dtype)


#: celerinfer weight dtype -> the GGUF weight format llama.cpp runs for the same bytes class (the
#: engine's formats llama.cpp can run: only those are compared)
MATCHING_GGUF = {name: gguf for name in WEIGHT_FORMATS if (gguf := matching_gguf(name)) is not None}


def engine_format(weight_dtype: str) -> str:
    """The engine format whose layout a setup's weight format has: an engine format itself, a
    GGUF type of one (q8_0: int8, one byte per value plus an fp16 scale per 32 values) or a
    stand-in (f16: bf16)."""
    if weight_dtype in WEIGHT_FORMATS:
        return weight_dtype
    same = format_of_gguf_type(weight_dtype)
    if same is not None:
        return same.name
    for engine, stand_in in LLAMA_STAND_INS.items():
        if stand_in == weight_dtype:
            return engine
    raise ValueError(f"unknown weight format {weight_dtype!r}")


#: A GGUF model's own file: celerinfer computes in the formats it stores, llama.cpp runs the
#: file itself (the same bytes), torch its dequantized values in f32.
STORED = "stored"


def format_class(weight_dtype: str) -> str:
    """f32, 16-bit, 8-bit or 4-bit: the weight formats compared with each other (by their bits per
    value); "stored": a GGUF model's own file."""
    if weight_dtype == STORED:
        return STORED
    bits = weight_format(engine_format(weight_dtype)).value_bits
    return "f32" if bits == 32 else f"{bits}-bit"


@dataclass(frozen=True)
class Setup:
    """One measured configuration. weight_dtype: celerinfer's f32/bf16/int8, torch's f32 or a
    GGUF type (f32/f16/q8_0); kv_cache: the cache storage (celerinfer: from the version);
    matmul_precision: celerinfer's (None for the other backends)."""

    backend: str
    weight_dtype: str
    kv_cache: str
    version: str | None = None
    flash_attn: bool = False
    matmul_precision: str | None = None

    @property
    def label(self) -> str:
        kv = f"{self.version} ({self.kv_cache} KV)" if self.version else f"{self.kv_cache} KV"
        precision = f" ({self.matmul_precision})" if self.matmul_precision not in (None, "highest") else ""
        return f"{self.backend} {self.weight_dtype}{precision} / {kv}" + (" + FA" if self.flash_attn else "")

    @property
    def format_class(self) -> str:
        """f32, 16-bit or 8-bit: the weight formats compared with each other."""
        return format_class(self.weight_dtype)

    def params(self) -> dict:
        return {"backend": self.backend, "weight_dtype": self.weight_dtype, "kv_cache": self.kv_cache,
                "flash_attn": self.flash_attn, "matmul_precision": self.matmul_precision, "label": self.label}


def kv_label(flags: dict) -> str:
    """A version's cache storage in a few characters (fp32, fp16, int8, int8-kivi)."""
    return flags["kv_dtype"] + ("-kivi" if flags.get("kv_quant") == "per_channel_kivi" else "")


def plan(backend_names, weight_dtypes, versions, llama_kv, version_flags: dict,
         engine_dtypes=tuple(MATCHING_GGUF), high_dtypes=()) -> list[Setup]:
    """The setups to measure, references first (see the module docstring). llama.cpp runs the
    GGUF format matching every weight dtype; celerinfer the ones its Engine has (engine_dtypes),
    and those of high_dtypes (where matmul precision "high" differs) again at "high"."""
    for what, names, known in (("backend", backend_names, backends.BACKENDS),
                               ("weight dtype", weight_dtypes, {**MATCHING_GGUF, STORED: STORED}),
                               ("llama.cpp KV cache type", llama_kv, backends.LLAMA_KV_TYPES),
                               ("version", versions, version_flags)):
        for name in names:
            if name not in known:
                raise ValueError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    for v in versions:
        if not version_flags[v]["use_cache"]:
            raise ValueError(f"{v} has no KV cache: the comparison times cached decoding")
    setups = []
    if "torch" in backend_names:
        setups.append(Setup("torch", "f32", "fp32"))
        if "bf16" in weight_dtypes:
            setups.append(Setup("torch", "bf16", "bf16"))
    if "llama.cpp" in backend_names:
        for w in weight_dtypes:
            for kv in llama_kv:
                setups.append(Setup("llama.cpp", MATCHING_GGUF.get(w, w), kv, flash_attn=kv not in ("f32", "f16")))
    if "celerinfer" in backend_names:
        own = [w for w in weight_dtypes if w in engine_dtypes or w == STORED]
        # the other versions run the model's own file where there is one, else the most compact format
        compact = STORED if STORED in own else (own[-1] if own else None)
        if "v1" in versions:
            for w in own:
                setups.append(Setup("celerinfer", w, kv_label(version_flags["v1"]), "v1", matmul_precision="highest"))
            for w in own:
                if w in high_dtypes:
                    setups.append(Setup("celerinfer", w, kv_label(version_flags["v1"]), "v1", matmul_precision="high"))
        for v in versions:
            if v != "v1" and compact:
                setups.append(Setup("celerinfer", compact, kv_label(version_flags[v]), v, matmul_precision="highest"))
    return setups


def high_precision_dtypes(weight_dtypes) -> list[str]:
    """The weight dtypes whose prefill runs differently at matmul precision "high" on this CPU."""
    return [w for w in weight_dtypes if w in WEIGHT_DTYPES and precision_changes_prefill(w)]


def weight_bytes_per_token(config: ModelConfig, weight_dtype: str, context_length: int) -> float:
    """Weight bytes one decode step reads (the roofline model: every matrix once in the format,
    the norms in fp32, one embedding row)."""
    return roofline.decode_cost(config, "v1", 1, context_length, weight_dtype=engine_format(weight_dtype)).weight_bytes


def ceiling_metrics(decode_weight_gbps: float, ceiling_gbps: float) -> dict:
    """The decode's weight traffic against the run's bandwidth ceiling (the best triad or
    read-only stream repetition): a fraction, or, when the traffic exceeds the ceiling, no
    fraction and a note that the calibration is wrong (weights served from a cache, a stream
    that did not saturate the memory), instead of a "130%" nobody should believe."""
    exceeded = bool(ceiling_gbps) and decode_weight_gbps > ceiling_gbps
    return {"bandwidth_ceiling_gbps": ceiling_gbps,
            "ceiling_fraction": None if exceeded or not ceiling_gbps else decode_weight_gbps / ceiling_gbps,
            "calibration_exceeded": exceeded,
            "calibration_note": (f"decode read weights at {decode_weight_gbps:.1f} GB/s, above the measured ceiling "
                                 f"of {ceiling_gbps:.1f} GB/s: the bandwidth calibration is wrong for this run"
                                 if exceeded else None)}


def speed_metrics(runs, prompt_length: int, gen_length: int, weight_bytes: float, bandwidth_gbps: float | None) -> dict:
    """Metrics of one setup from its timed runs [(prefill_ns, [decode_ns, ...]), ...]."""
    prefill = [p for p, _ in runs]
    decode_totals = [sum(d) for _, d in runs]
    pp = [prompt_length / (p / 1e9) for p in prefill]
    tg = [gen_length / (t / 1e9) for t in decode_totals]
    m = {"pp_tokens_per_s": stats.summarize(pp, unit="tok/s", raw_unit=None),
         "tg_tokens_per_s": stats.summarize(tg, unit="tok/s", raw_unit=None),
         "prefill_ms": stats.summarize(prefill),
         "decode_ms_per_token": stats.summarize([t for _, d in runs for t in d]),
         "weight_bytes_per_token": weight_bytes}
    m["decode_weight_gbps"] = weight_bytes * m["tg_tokens_per_s"]["median"] / 1e9
    m["bandwidth_gbps"] = bandwidth_gbps
    m["bandwidth_fraction"] = m["decode_weight_gbps"] / bandwidth_gbps if bandwidth_gbps else None
    return m


def _median(record: dict, metric: str) -> float:
    return record["metrics"][metric]["median"]


def ratios(setup: Setup, metrics: dict, earlier: list[dict]) -> dict:
    """This setup's pp and tg speeds over the references measured before it (records):
    ``vs_torch`` (torch fp32); for celerinfer, ``vs_torch_same_format`` (torch in the same
    weight format class, when it was measured and is not fp32) and ``vs_llama_cpp``: the
    fastest llama.cpp setup of the matching GGUF format (q8_0 for int8, f16 for bf16, the file
    itself for stored), per metric (its label in ``*_reference``). None: no reference. Each
    ratio is the ratio of medians (results/speedup.py), its bootstrap 95% CI in ``*_ci95``."""
    out = {"vs_torch": None, "vs_torch_same_format": None, "vs_llama_cpp": None}

    def ratio(ref: dict, metric: str) -> Speedup:  # the one speedup: ratio of medians, with its CI
        return speedup(ref["metrics"][metric]["samples"], metrics[metric]["samples"])

    def over(ref: dict, ref_tg: dict | None = None) -> dict:
        pp, tg = ratio(ref, "pp_tokens_per_s"), ratio(ref_tg or ref, "tg_tokens_per_s")
        return {"pp": pp.ratio, "tg": tg.ratio, "pp_ci95": list(pp.ci95), "tg_ci95": list(tg.ci95)}

    torch_refs = {format_class(r["params"]["weight_dtype"]): r for r in earlier if r["params"]["backend"] == "torch"}
    if "f32" in torch_refs and not (setup.backend == "torch" and setup.weight_dtype == "f32"):
        out["vs_torch"] = over(torch_refs["f32"])
    if setup.backend == "celerinfer" and setup.format_class != "f32" and setup.format_class in torch_refs:
        out["vs_torch_same_format"] = over(torch_refs[setup.format_class])
    same = MATCHING_GGUF.get(setup.weight_dtype, setup.weight_dtype)  # int8: q8_0, bf16: f16, stored: stored
    llama = [r for r in earlier if r["params"]["backend"] == "llama.cpp" and r["params"]["weight_dtype"] == same]
    if llama and setup.backend == "celerinfer":
        best_pp = max(llama, key=lambda r: _median(r, "pp_tokens_per_s"))
        best_tg = max(llama, key=lambda r: _median(r, "tg_tokens_per_s"))
        out["vs_llama_cpp"] = {**over(best_pp, best_tg), "pp_reference": best_pp["params"]["label"],
                               "tg_reference": best_tg["params"]["label"]}
    return out


class BackendComparison(BenchRun):
    """One `bench compare` invocation: the model, the setups, the records."""

    def __init__(self, config: dict, prompt_length: int, gen_length: int, repeats: int = 3,
                 backend_names=backends.BACKENDS, weight_dtypes=None, versions=DEFAULT_VERSIONS,
                 llama_kv=DEFAULT_LLAMA_KV, gguf_dir=None, log_file=None, progress: bool | None = None):
        for name, value, minimum in (("prompt_length", prompt_length, 1), ("gen_length", gen_length, 1),
                                     ("repeats", repeats, 1)):
            if int(value) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        self.prompt_length, self.gen_length, self.repeats = int(prompt_length), int(gen_length), int(repeats)
        self.max_seq_len = self.prompt_length + self.gen_length + 1
        super().__init__(config, log_file=log_file, progress=progress)
        self.skipped: dict[str, str] = {}
        names = []
        for name in backend_names:
            reason = backends.unavailable(name)
            if reason:
                self.skipped[name] = reason
            else:
                names.append(name)
        supported = WEIGHT_DTYPES  # the formats this build's engine has
        gguf_file = self.model.source if str(self.model.source or "").lower().endswith(".gguf") else None
        self.gguf_file = Path(gguf_file) if gguf_file else None
        # a GGUF model: its own file, and the 8-bit export; a random one: every format
        self.weight_dtypes = list(weight_dtypes or ((STORED, "int8") if self.gguf_file else MATCHING_GGUF))
        if STORED in self.weight_dtypes and self.gguf_file is None:
            raise ValueError(f"weight dtype {STORED!r} compares a GGUF model's own file; "
                             f"{self.model_info['name']} is not a GGUF file")
        for w in self.weight_dtypes:
            if w not in supported and w in MATCHING_GGUF and "celerinfer" in names:
                self.skipped[f"celerinfer {w}"] = (f"this celerinfer build has no weight_dtype {w!r} "
                                                   f"(supported: {', '.join(supported)})")
        self.setups = plan(names, self.weight_dtypes, list(versions), list(llama_kv), self.version_flags, supported,
                           high_precision_dtypes(self.weight_dtypes))
        if "celerinfer" in names and not precision_changes_prefill("f32"):
            self.skipped["celerinfer (high)"] = ("matmul precision high computes as highest here "
                                                 f"(prefill GEMM {_core.prefill_gemm('f32', 'high')}; no AMX)")
        head_dim = self.model.config.hidden_size // self.model.config.num_attention_heads
        for s in [s for s in self.setups if s.backend == "llama.cpp" and s.kv_cache == "q8_0" and head_dim % 32]:
            self.skipped[s.label] = f"llama.cpp's q8_0 KV cache needs a head_dim multiple of 32 (this model: {head_dim})"
            self.setups.remove(s)
        self.gguf_dir = Path(gguf_dir) if gguf_dir else None
        self.interrupted = False
        #: label -> the engine's packed weight bytes, for the celerinfer setups that ran
        self.packed_weight_bytes: dict[str, int] = {}
        self.kernels: dict[str, dict] = {}  # celerinfer setups' kernels, by label

    def _load_model(self):
        """The configured model; a preset's max_position_embeddings grows to fit a long run."""
        model, info = super()._load_model()
        if model.config.max_position_embeddings >= self.max_seq_len:
            return model, info
        if self.config["model"]:
            raise ValueError(f"{info['name']} holds {model.config.max_position_embeddings} positions: "
                             f"prompt + generation need {self.max_seq_len}")
        fields = {**PRESETS[info["name"]]["model"], "max_position_embeddings": self.max_seq_len}
        model = random_model(ModelConfig(**fields), seed=info["seed"])
        info["config"]["max_position_embeddings"] = self.max_seq_len
        return model, info

    def _params(self, **extra) -> dict:
        return {"prompt_length": self.prompt_length, "gen_length": self.gen_length, "batch_size": 1,
                "seed": self.config["seed"], "num_warmup_runs": 1, "num_measure_runs": self.repeats, **extra}

    # ---- the run --------------------------------------------------------------------------

    def _runner(self, setup: Setup, gguf_files: dict):
        if setup.backend == "celerinfer":
            return backends.CelerinferRunner(self.model, setup.version, None if setup.weight_dtype == STORED
                                             else setup.weight_dtype, self.max_seq_len, setup.matmul_precision)
        if setup.backend == "torch":
            return backends.TorchRunner(self.model, self.threads, self.max_seq_len, setup.weight_dtype)
        if setup.weight_dtype == STORED:
            gguf_files[STORED] = self.gguf_file
        if setup.weight_dtype not in gguf_files:  # exported once, kept for every round of the run
            folder = self.gguf_dir or Path(self._tmp)
            name = Path(str(self.model_info["name"])).stem
            gguf_files[setup.weight_dtype] = export_gguf(self.model, folder / f"{name}-{setup.weight_dtype}.gguf",
                                                         setup.weight_dtype, progress=self.progress is not False)
        return backends.LlamaCppRunner(gguf_files[setup.weight_dtype], setup.kv_cache, setup.flash_attn,
                                       self.threads, n_ctx=self.max_seq_len)

    def _measure_once(self, setup: Setup, gguf_files: dict, ids):
        """One timed run of a setup, after a short warm-up run of the same prompt; None when
        interrupted (Ctrl-C) before it finished."""
        runner = self._runner(setup, gguf_files)
        if isinstance(runner, backends.CelerinferRunner):
            self.packed_weight_bytes[setup.label] = runner.engine.packed_weight_bytes
            self.kernels[setup.label] = runner.engine.kernels
        try:
            with self._interruptible():
                runner.run(ids, min(WARMUP_DECODE_TOKENS, self.gen_length))
                return runner.run(ids, self.gen_length)
        finally:
            runner.close()

    @cached_property
    def stored_weight_bytes(self) -> int:
        """Weight bytes a decode step of the model as stored reads: its packed matrices (the
        tied head reads the whole embedding table). Packed once, for every stored setup."""
        return Engine(self.model, "v1", max_seq_len=1).packed_weight_bytes

    def _logit_agreement(self, gguf_files: dict, ids) -> dict:
        """Per weight format both ran: llama.cpp's logits on the prompt against celerinfer's
        (v1 cache, the same format): KL(celerinfer || llama.cpp) per position (mean, max),
        top-1 agreement, the largest logit difference over the largest logit."""
        out = {}
        for setup in self.setups:
            w = setup.weight_dtype
            if setup.backend != "llama.cpp" or w in out or w not in gguf_files:
                continue
            ours_dtype = None if w == STORED else engine_format(w)
            if ours_dtype is not None and ours_dtype not in WEIGHT_DTYPES:
                continue
            ours = Engine(self.model, "v1", max_seq_len=self.max_seq_len, weight_dtype=ours_dtype).forward(ids)[0]
            runner = backends.LlamaCppRunner(gguf_files[w], "f32", False, self.threads, n_ctx=self.max_seq_len,
                                             logits_all=True)
            try:
                theirs = runner.logits(ids)
            finally:
                runner.close()
            out[w] = logit_agreement(ours, theirs)
            out[w]["celerinfer_weight_dtype"] = ours_dtype or STORED
        return out

    def _triad_gbps(self, cal: dict) -> float:
        """The triad bandwidth again, briefly, on the calibration's working set."""
        return float(np.median(_core.stream_triad(max(1, int(cal["triad_bytes"]) // 12), 3)))

    def _read_gbps(self, cal: dict) -> float:
        """The best of a short read-only stream over the same working set."""
        return float(max(_core.stream_read(int(cal["read_floats"]), 3)))

    def run(self) -> list[dict]:
        """Calibrates, then measures the setups round-robin: round r runs every setup once, so
        a burst of load from another process on a shared machine slows one run of every setup
        instead of every run of one setup (the ratios stay fair). The triad is re-measured
        between rounds and its median over the run is the bandwidth. Appends one record per
        setup; returns the records."""
        with one_blas_thread():  # (blas_threads.py says why)
            return self._run()

    def _run(self) -> list[dict]:
        ids = random_tokens(1, self.prompt_length, self.model.config.vocab_size, seed=self.config["seed"])
        cal = self.measure_ceilings()
        bandwidths = [cal["bandwidth_gbps"]["median"]]
        ceilings = [cal.get("bandwidth_ceiling_gbps") or cal["bandwidth_gbps"]["median"]]
        runs: dict[str, list] = {s.label: [] for s in self.setups}
        loads: dict[str, list] = {s.label: [] for s in self.setups}  # the noise guard's, per setup
        active = list(self.setups)
        gguf_files: dict[str, Path] = {}
        self._tmp = tempfile.mkdtemp(prefix="celerinfer-gguf-")
        try:
            with self._bar(len(self.setups) * self.repeats, "compare") as bar:
                for round_index in range(self.repeats):
                    for setup in list(active):
                        bar.set_postfix_str(f"round {round_index + 1}: {setup.label}")
                        try:
                            with LoadWatch() as watch:
                                run = self._measure_once(setup, gguf_files, ids)
                            loads[setup.label].append(watch.load())
                        except (RuntimeError, ValueError, OSError) as exc:  # one broken setup must not cost the others
                            self.skipped[setup.label] = f"failed: {type(exc).__name__}: {exc}"
                            active.remove(setup)
                            continue
                        if run is not None:
                            runs[setup.label].append(run)
                        bar.update(1)
                        if self.interrupted:
                            break
                    if self.interrupted:
                        break
                    if round_index + 1 < self.repeats:
                        bandwidths.append(self._triad_gbps(cal))
                        ceilings.append(max(bandwidths[-1], self._read_gbps(cal)))
            agreement = {} if self.interrupted else self._logit_agreement(gguf_files, ids)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
        bandwidth = float(np.median(bandwidths))
        measured: list[dict] = []
        for setup in self.setups:
            if runs[setup.label] and setup.label not in self.skipped:
                nbytes = (self.stored_weight_bytes if setup.weight_dtype == STORED
                          else weight_bytes_per_token(self.model.config, setup.weight_dtype, self.prompt_length))
                metrics = speed_metrics(runs[setup.label], self.prompt_length, self.gen_length, nbytes, bandwidth)
                metrics["bandwidth_gbps_rounds"] = bandwidths
                metrics.update(ceiling_metrics(metrics["decode_weight_gbps"], max(ceilings)))
                metrics["packed_weight_bytes"] = self.packed_weight_bytes.get(setup.label)
                metrics.update(ratios(setup, metrics, measured))
                if setup.backend == "llama.cpp":
                    metrics["logits_vs_celerinfer"] = agreement.get(setup.weight_dtype)
                noise = noise_verdict([sum(d) for _, d in runs[setup.label]], combine_loads(loads[setup.label]),
                                      self.threads)
                params = self._params(**setup.params(), **self.kernels.get(setup.label, {}))
                measured.append(self._record(BENCHMARK, setup.version, params,
                                             metrics, self._status(), noise))
        return measured


def logit_agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """(S, V) logits of two backends on the same positions: KL(ours || theirs) per position
    (mean, max), top-1 agreement, max |difference| / max |theirs|."""
    def log_softmax(x):
        x = x.astype(np.float64)
        x = x - x.max(axis=-1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

    lp, lq = log_softmax(ours), log_softmax(theirs)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    return {"kl_mean": float(kl.mean()), "kl_max": float(kl.max()),
            "top1_agreement": float((ours.argmax(-1) == theirs.argmax(-1)).mean()),
            "max_rel_logit_diff": float(np.abs(ours - theirs).max() / np.abs(theirs).max()),
            "positions": int(ours.shape[0])}


# ---- the report ------------------------------------------------------------------------------

def _fmt(x, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def _agreement_cell(a: dict | None) -> str:
    return "-" if not a else f"{a['kl_mean']:.2g}, {100 * a['top1_agreement']:.0f}%"


def _ratio_cell(vs: dict, key: str) -> str:
    """A speed ratio and its 95% CI, '1.48x [1.40-1.55]' (older records: the ratio alone)."""
    ci = vs.get(f"{key}_ci95")
    text = _fmt(vs.get(key), ".2f", "x")
    return text + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if isinstance(ci, list) and len(ci) == 2 else "")


def _bandwidth_cell(m: dict) -> str:
    """The decode's share of the ceiling (older records: of the triad), or the warning."""
    if m.get("calibration_exceeded"):
        return "above the ceiling: calibration wrong"
    fraction = m["ceiling_fraction"] if "ceiling_fraction" in m else m.get("bandwidth_fraction")
    return _fmt(fraction and 100 * fraction, ".0f", "%")


def format_table(records: list[dict]) -> str:
    """A markdown table of compare records (in the order given) and the calibration they used."""
    rows = [r for r in records if r.get("benchmark") == BENCHMARK]
    if not rows:
        return "(no compare records)"
    p = rows[0]["params"]
    pp, tg = f"pp{p['prompt_length']}", f"tg{p['gen_length']}"
    lines = [f"| setup | {pp} tok/s | {tg} tok/s | weight GB/s in decode | % of bandwidth ceiling | "
             f"{pp} vs llama.cpp | {tg} vs llama.cpp | {pp} vs torch fp32 | {tg} vs torch fp32 | "
             f"{pp} vs torch same format | {tg} vs torch same format | logits vs celerinfer: KL, top-1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        m = r["metrics"]
        vs = [m.get(key) or {} for key in ("vs_llama_cpp", "vs_torch", "vs_torch_same_format")]
        mark = " (interrupted)" if r.get("status") == "interrupted" else ""
        if (r.get("noise") or {}).get("verdict") == "untrustworthy":
            mark += " (noisy)"
        lines.append(f"| {r['params']['label']}{mark} | {_fmt(m['pp_tokens_per_s']['median'])} | "
                     f"{_fmt(m['tg_tokens_per_s']['median'], '.2f')} | {_fmt(m['decode_weight_gbps'], '.2f')} | "
                     f"{_bandwidth_cell(m)} | "
                     + " | ".join(_ratio_cell(v, k) for v in vs for k in ("pp", "tg"))
                     + f" | {_agreement_cell(m.get('logits_vs_celerinfer'))} |")
    first = rows[0]
    simd = next((r["params"]["simd_level"] for r in rows if r["params"].get("simd_level")), None)
    kernels = {r["params"]["label"].split(" / ")[0].removeprefix("celerinfer "):
               f"{r['params']['prefill_gemm']} / {r['params'].get('decode_gemv', '?')}"
               for r in rows if r["params"].get("prefill_gemm")}
    if kernels:
        lines.append("")
        lines.append("celerinfer's kernels (prefill GEMM / decode GEMV): "
                     + ", ".join(f"{k} {v}" for k, v in kernels.items()))
    bw, ceiling = first["metrics"].get("bandwidth_gbps"), first["metrics"].get("bandwidth_ceiling_gbps")
    n = first["model"]["num_parameters"]
    size = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.3g}M"
    head = (f"model {first['model']['name']} ({size} parameters), CPU {first.get('cpu_model') or 'unknown'} "
            f"(SIMD level {simd or _core.simd_level()}), {first['threads']} threads, prompt {p['prompt_length']}, {p['gen_length']} decode tokens, "
            f"median of {p['num_measure_runs']} runs (ratios: of medians, [bootstrap 95% CI]); memory bandwidth (triad, this run) {_fmt(bw, '.2f')} GB/s"
            + (f", ceiling (best triad or read-only stream) {_fmt(ceiling, '.2f')} GB/s" if ceiling else ""))
    return head + "\n\n" + "\n".join(lines)


def run_backend_comparison(preset: str | None = None, model: str | None = None, prompt_length: int | None = None,
                gen_length: int = DEFAULT_GEN, repeats: int = 3, long: bool = False, threads: int | None = None,
                seed: int | None = None, log_file=None, progress: bool | None = None, **options) -> BackendComparison:
    """Runs the comparison and returns the BackendComparison (its .records, .setups, .skipped).
    long: a 2048-token prompt (unless prompt_length is given). options: backend_names,
    weight_dtypes, versions, llama_kv, gguf_dir (see :class:`BackendComparison`)."""
    if prompt_length is None:
        prompt_length = LONG_PROMPT if long else DEFAULT_PROMPT
    if not model and not preset:
        preset = DEFAULT_PRESET
    config = load_config(preset=preset, overrides={"model": model, "threads": threads, "seed": seed})
    run = BackendComparison(config, prompt_length, gen_length, repeats, log_file=log_file, progress=progress,
                     **{k: v for k, v in options.items() if v is not None})
    try:
        run.run()
    except KeyboardInterrupt:  # between setups: what was measured is already in the log
        run.interrupted = True
    return run


__all__ = ["BackendComparison", "Setup", "format_table", "plan", "ratios", "run_backend_comparison", "speed_metrics",
           "weight_bytes_per_token"]
