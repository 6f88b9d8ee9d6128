"""Benchmark configuration: the packaged default, a preset's scaled-down settings, the user's
YAML file and command-line overrides, merged in that order and checked."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from ..engine import MATMUL_PRECISIONS, WEIGHT_DTYPES
from ..registry import version_names
from .presets import PRESETS

BENCHMARKS = ("latency", "memory", "phase", "perplexity", "roofline")
#: where the engine runs: the engine itself refuses a device it has no backend for (CUDA today)
DEVICES = ("cpu", "cuda")


def benchmark_names(benchmarks) -> list[str]:
    """The benchmarks to run ('all' or nothing: every one); ValueError names unknown ones."""
    names = list(BENCHMARKS) if not benchmarks or "all" in benchmarks else list(benchmarks)
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}, all")
    return names


def default_config() -> dict:
    text = resources.files(__package__).joinpath("default_config.yaml").read_text()
    return yaml.safe_load(text)


def _merge(base: dict, extra: dict) -> dict:
    """A copy of base with extra's keys on top; nested dicts merge key by key."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: Path):
    """The YAML document in `path`; ValueError naming the file and the place when it is not
    YAML (a message, not yaml's traceback)."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None


def load_config(path: str | Path | None = None, preset: str | None = None, overrides: dict | None = None) -> dict:
    """The effective configuration. Precedence: CLI overrides > the user's file > the preset's
    benchmark settings > the packaged default. ValueError names any bad key or value."""
    base = default_config()
    user = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such config file: {path}")
        user = read_yaml(path) or {}
        if not isinstance(user, dict):
            raise ValueError(f"{path}: a benchmark config must be a YAML mapping")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted((set(user) | set(overrides)) - set(base))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(base)}")
    for section in [k for k, v in base.items() if isinstance(v, dict)]:
        for given in (user, overrides):
            if isinstance(given.get(section), dict):
                bad = sorted(set(given[section]) - set(base[section]))
                if bad:
                    raise ValueError(f"unknown config key(s) {[f'{section}.{k}' for k in bad]}; known: "
                                     f"{sorted(base[section])}")
    name = preset or overrides.get("preset") or user.get("preset") or base["preset"]
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    # A preset named without a model runs the preset (not the default's packaged model).
    named_preset = bool(preset or overrides.get("preset") or user.get("preset"))
    model = overrides.get("model") or user.get("model") or (None if named_preset else base["model"])
    uses_preset = not model
    config = _merge(base, PRESETS[name]["bench"] if uses_preset else {})
    config = _merge(_merge(config, user), overrides)
    config["model"] = model
    config["preset"] = name
    check_config(config)
    return config


def check_config(config: dict) -> None:
    def positive_int(key, value, minimum=1):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"config: {key} must be an integer >= {minimum}, got {value!r}")

    for key in ("prompt_length", "batch_size", "T_star", "num_measure_runs"):
        positive_int(key, config[key])
    positive_int("num_warmup_runs", config["num_warmup_runs"], 0)
    if config["threads"] is not None:
        positive_int("threads", config["threads"])
    if not config["T_values"] or not isinstance(config["T_values"], list):
        raise ValueError("config: T_values must be a non-empty list of integers")
    for t in config["T_values"]:
        positive_int("T_values[]", t)
    known = version_names()
    bad = [v for v in config["versions"] if v not in known]
    if bad or not config["versions"]:
        raise ValueError(f"config: unknown version(s) {bad or '(none given)'}; known: {', '.join(known)}")
    if config["weight_dtype"] not in ("stored",) + tuple(WEIGHT_DTYPES):
        raise ValueError(f"config: weight_dtype {config['weight_dtype']!r} is not one of stored, "
                         f"{', '.join(WEIGHT_DTYPES)}")
    if config["matmul_precision"] not in MATMUL_PRECISIONS:
        raise ValueError(f"config: matmul_precision {config['matmul_precision']!r} is not one of "
                         f"{', '.join(MATMUL_PRECISIONS)}")
    if config.get("device", "cpu") not in DEVICES:
        raise ValueError(f"config: device {config['device']!r} is not one of {', '.join(DEVICES)}")
    if config["dtype"] != "float32":
        raise ValueError(f"config: dtype {config['dtype']!r} is not supported yet (float32)")
    ppl = config["perplexity"]
    positive_int("perplexity.sequence_length", ppl["sequence_length"], 2)
    positive_int("perplexity.num_sequences", ppl["num_sequences"])
    if ppl["stride"] is not None:
        positive_int("perplexity.stride", ppl["stride"])
        if ppl["stride"] > ppl["sequence_length"]:
            raise ValueError(f"config: perplexity.stride {ppl['stride']} exceeds sequence_length {ppl['sequence_length']}")
    formats = ppl["weight_dtypes"]
    if formats is not None and (not isinstance(formats, list) or not formats
                                or any(w not in ("stored",) + tuple(WEIGHT_DTYPES) for w in formats)):
        raise ValueError(f"config: perplexity.weight_dtypes must be a list of stored, {', '.join(WEIGHT_DTYPES)}; "
                         f"got {formats!r}")
    if ppl["baseline_version"] not in known:
        raise ValueError(f"config: perplexity.baseline_version {ppl['baseline_version']!r} is not a version")
    positive_int("roofline.prompt_length", config["roofline"]["prompt_length"])
    positive_int("roofline.decode_tokens", config["roofline"]["decode_tokens"], 2)
