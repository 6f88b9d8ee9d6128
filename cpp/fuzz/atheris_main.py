"""The command line both atheris targets share: `--make-seeds DIR` writes the target's seed
corpus, anything else goes to libFuzzer (flags and corpus folders)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(make_seeds, test_one_input) -> None:
    import atheris

    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        make_seeds(Path(sys.argv[2]))
        sys.exit(0)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
