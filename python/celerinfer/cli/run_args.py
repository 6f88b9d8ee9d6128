"""The `run` subcommand's arguments: the parser (every flag of seed 001's inference script),
the checks argparse cannot make, and the prompts the flags ask for."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..bench.seed_run import Prompt
from ..registry import version_names
from ..results import bounded_json
from ..results.inference_metrics import BASELINE_VERSION, DEFAULT_BENCHMARK_DIR
from .args import env_default

DEFAULT_VERSION = "v1"


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
    p.add_argument("--model", "--checkpoint", dest="model", default=env_default("JSON_PATH", "smollm2"),
                   help="model: a packaged model's name (smollm2: SmolLM2-135M-Instruct), a .gguf file, a .json "
                        "(seed format) or .safetensors file, a Hugging Face folder, or a PyTorch checkpoint (.pt; "
                        "config from --config or config.json beside it) (default: $JSON_PATH or smollm2); text goes "
                        "through the GGUF file's tokenizer, a tokenizer.json in the folder or beside the file, or "
                        "bytes")
    p.add_argument("--config", metavar="JSON", default=None,
                   help="config of a PyTorch checkpoint: a config.json path or inline JSON ('{\"hidden_size\": ...}')")
    prompts = p.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", help="prompt text (byte-level tokens: the model needs vocab_size >= 256)")
    prompts.add_argument("--prompt-ids", type=int, nargs="+", metavar="ID", help="the prompt as token ids")
    prompts.add_argument("--prompt-file", metavar="FILE", help="a batch of prompts: one per non-empty line")
    prompts.add_argument("--prompts", nargs="+", metavar="TEXT", help="a batch of prompts")
    p.add_argument("--chat", action="store_true",
                   help="each prompt is a user message in the model's chat template (a GGUF model's); the answer "
                        "is streamed as it comes and ends at the model's end-of-turn token")
    p.add_argument("--system", metavar="TEXT", default=None,
                   help="with --chat: a system message (default: the template's own)")
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
    return p


def validate(args) -> None:
    """What argparse cannot check: the ranges together, and --version against the registry."""
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
    if args.system is not None and not args.chat:
        raise ValueError("--system needs --chat")
    if args.chat and args.prompt_ids is not None:
        raise ValueError("--chat takes text prompts (--prompt, --prompts, --prompt-file), not --prompt-ids")
    names = version_names()
    if args.version not in names:
        raise ValueError(f"unknown --version {args.version!r}: choose one of {', '.join(names)}")


def config_arg(text: str | None):
    """--config: None, inline JSON (starts with '{') or a path."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return bounded_json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--config: not valid JSON ({exc})") from None


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


def chat_text(tokenizer, text: str, system: str | None) -> str:
    """A user message (and a system one) in the tokenizer's chat template, the answer to come."""
    if not hasattr(tokenizer, "apply_chat_template"):
        raise ValueError("--chat needs a model with a chat template (a GGUF model such as smollm2)")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def resolve_prompts(args, tokenizer, vocab_size: int) -> list[Prompt]:
    """The prompts the arguments ask for (in the chat template with --chat), tokenized and
    checked against the vocabulary."""
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
        if getattr(args, "chat", False):  # the template carries the special tokens itself
            result.append(Prompt(text, tokenizer.encode(chat_text(tokenizer, text, args.system),
                                                        add_special_tokens=False), chat=True))
        else:
            result.append(Prompt(text, tokenizer.encode(text)))
    return result
