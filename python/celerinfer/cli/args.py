"""Arguments several commands share, and a helper that adds a table of typed flags."""

from __future__ import annotations

import os


def env_default(name: str, fallback):
    return os.environ.get(name, fallback)


def add_model_arg(p) -> None:
    p.add_argument("--model", default=env_default("JSON_PATH", "dump_minimind/minimind.json"),
                   help="model file (default: $JSON_PATH or dump_minimind/minimind.json)")


def add_threads_arg(p) -> None:
    p.add_argument("--threads", type=int, default=0, help="threads (default: all CPUs)")


def add_flags(p, flags) -> None:
    """Add (flag, type, default, help) rows, each a typed flag with a default."""
    for flag, kind, default, text in flags:
        p.add_argument(flag, type=kind, default=default, help=text)
