#!/usr/bin/env python3
"""celerinfer vs PyTorch eager vs llama.cpp on the same weights: `celerinfer bench compare` as a
script. Flags as for the command (`celerinfer bench --help`), e.g.

    python benchmarks/compare_backends.py --threads 2 --repeats 1
    python benchmarks/compare_backends.py --preset tiny --prompt-length 16 --gen-len 8

See docs/guide/compare.md."""

import sys

from celerinfer.cli.app import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "compare", *sys.argv[1:]]))
