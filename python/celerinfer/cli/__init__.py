"""The command line (``celerinfer ...``, ``python -m celerinfer ...``): :mod:`.app` (the parser and
main), one module per group of commands (:mod:`.model_commands`, :mod:`.bench_commands`,
:mod:`.run_command`), :mod:`.args` (shared arguments). Nothing else in the package imports it.
"""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
