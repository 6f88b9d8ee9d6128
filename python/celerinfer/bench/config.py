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
    user, overrides = seed_keys(user), seed_keys(overrides)
    name = preset or overrides.get("preset") or user.get("preset") or base["preset"]
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    # A preset (or seed 002's model_config) named without a model runs it, not the default's
    # packaged model.
    named_preset = bool(preset or overrides.get("preset") or user.get("preset") or user.get("model_config"))
    model = overrides.get("model") or user.get("model") or (None if named_preset else base["model"])
    uses_preset = not model
    config = _merge(base, PRESETS[name]["bench"] if uses_preset else {})
    config = _merge(_merge(config, user), overrides)
    config["model"] = model
    config["preset"] = name
    check_config(config)
    return config


#: seed 002's model_config keys -> ModelConfig's (nanoGPT's GPT-2: one KV head per head, 4x MLP)
_SEED_MODEL_KEYS = {"n_layer": "num_hidden_layers", "n_head": "num_attention_heads", "n_embd": "hidden_size",
                    "block_size": "max_position_embeddings", "vocab_size": "vocab_size"}
#: pretrained names in seed 002 whose trained weights no package ships
_HUB_ONLY = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def model_config_kwargs(model_config) -> dict:
    """ModelConfig keyword arguments of seed 002's ``model_config:`` (a GPT-2 architecture,
    random weights); ValueError names a bad key or value. ``dropout`` is accepted and has no
    effect (inference); ``bias: false`` is refused (the gpt2 architecture has its biases)."""
    if not isinstance(model_config, dict):
        raise ValueError(f"config: model_config must be a mapping of n_layer, n_head, n_embd, block_size, "
                         f"vocab_size, got {model_config!r}")
    known = set(_SEED_MODEL_KEYS) | {"dropout", "bias"}
    bad = sorted(set(model_config) - known)
    if bad:
        raise ValueError(f"config: unknown model_config key(s) {bad}; known: {sorted(known)}")
    missing = sorted(set(_SEED_MODEL_KEYS) - set(model_config))
    if missing:
        raise ValueError(f"config: model_config needs {missing}")
    for key in _SEED_MODEL_KEYS:
        value = model_config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config: model_config.{key} must be an integer >= 1, got {value!r}")
    if model_config["n_embd"] % model_config["n_head"]:
        raise ValueError(f"config: model_config.n_embd {model_config['n_embd']} is not a multiple of n_head "
                         f"{model_config['n_head']}")
    if model_config.get("bias", True) is not True:
        raise ValueError("config: model_config.bias false is not supported: the gpt2 architecture has its biases")
    dropout = model_config.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"config: model_config.dropout must be in [0, 1), got {dropout!r}")
    kwargs = {ours: model_config[seed] for seed, ours in _SEED_MODEL_KEYS.items()}
    hidden = kwargs["hidden_size"]
    return dict(architecture="gpt2", num_key_value_heads=kwargs["num_attention_heads"], intermediate_size=4 * hidden,
                layer_norm_epsilon=1e-5, hidden_act="gelu_new", tie_word_embeddings=True, **kwargs)


def seed_keys(user: dict) -> dict:
    """The user's file with seed 002's spellings made ours: ``pretrained:`` is ``model:``
    (``model:`` wins when both are given), ``dtype: bfloat16`` is bf16 weights (unless the file
    names a weight_dtype) with float32 activations."""
    user = dict(user)
    pretrained = user.get("pretrained")
    if pretrained is not None:
        if not isinstance(pretrained, str) or not pretrained:
            raise ValueError(f"config: pretrained must name a model (a file, a folder or smollm2), got {pretrained!r}")
        if pretrained in _HUB_ONLY:
            raise ValueError(f"config: pretrained: {pretrained}: no package ships GPT-2's trained weights (nothing "
                             f"is downloaded from a model hub); `preset: {pretrained}` runs its shape with random "
                             f"weights, `pretrained: smollm2` a trained model")
        user.setdefault("model", pretrained)
    if user.get("dtype") == "bfloat16":
        user["dtype"] = "float32"
        user.setdefault("weight_dtype", "bf16")
    return user


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
        raise ValueError(f"config: dtype {config['dtype']!r} is not supported (float32, or bfloat16 for bf16 "
                         f"weights with float32 activations)")
    if config["model_config"] is not None:
        model_config_kwargs(config["model_config"])  # names the bad key
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
