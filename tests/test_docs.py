"""The user guide (docs/guide/*.md) works as written.

What is tested:

* Commands: every line of a ```bash block that starts with ``celerinfer `` or
  ``python -m celerinfer `` (after optional ``VAR=value`` environment assignments), with ``\\``
  continuations joined. Comment lines and lines that install or set up the machine
  (``bash scripts/...``, ``pip ...``, ``sudo ...``, ``python -m venv ...``) are skipped;
  any other line fails the test, so a misspelt command cannot hide.

  1. Each command is parsed by the real parser, ``celerinfer.cli.build_parser()`` (fast): a flag
     that does not exist fails with the command's text.
  2. Each command runs for real (slow), as a subprocess, in document order together with the
     file's python blocks, in a temporary folder prepared with the files the examples name
     (``model.json``, ``model.safetensors``, ``prompts.txt``, ``corpus.txt``, ``my_study.yaml``
     (the yaml block of cli.md), ``grid.yaml`` (the one of sweeps.md), ``out/logits_*.npy``,
     ``random/logits_cpp.npy`` and a results log holding two runs), with ``XDG_CACHE_HOME``
     inside it. The exit status must be 0, or N when the line's comment says ``exit status N``
     (documented failures). Lines whose comment says ``(slow: not run by the doc test)`` are
     only parsed; they are listed in ``SLOW_EXCEPTIONS``.

* Python: each file's ```python blocks run in order in one namespace (fresh for every file), in
  the same prepared folder, interleaved with the commands; any exception fails the test.
* Links: every relative link and image of the guide points to an existing file, and an anchor
  into a guide page names one of its headings.
* Coverage: cli.md runs every subcommand and names every flag of every subcommand.

Commands and blocks that need torch are skipped (with the reason) when torch is missing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

import celerinfer
from celerinfer.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide"
PAGES = ("index", "install", "cli", "python-api", "checkpoints", "performance", "results", "plots", "compare",
         "extending", "troubleshooting", "cuda", "sweeps")
SLOW_MARK = "(slow: not run by the doc test)"
#: the only commands of the guide that are parsed but not run (too slow for the test suite)
SLOW_EXCEPTIONS = {
    "celerinfer bench all",
    "celerinfer bench latency memory --preset 1b --T-values 16 32",
    "celerinfer bench compare --threads 2",
    "celerinfer bench compare --model smollm2 --threads 2",
    "celerinfer bench compare --threads 2 --long --weight-dtypes int8 --repeats 1",
}
SETUP_PREFIXES = ("bash scripts/", "pip ", "sudo ", "python -m venv ")

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_TORCH = False


# ---- reading the guide -------------------------------------------------------------------------

def guide_files() -> list[Path]:
    return sorted(GUIDE.glob("*.md"))


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, text, line number of the opening fence) of every fenced block of a page."""
    out = []
    text = path.read_text()
    for m in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        out.append((m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1))
    return out


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment) of a shell line: the comment starts at a '#' outside quotes that
    begins the line or follows whitespace."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


class Command:
    """One shell command of the guide."""

    def __init__(self, text: str, comment: str, where: str):
        self.text, self.comment, self.where = text, comment, where
        tokens = shlex.split(text)
        self.env = {}
        while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
            name, _, value = tokens.pop(0).partition("=")
            self.env[name] = value
        self.tokens = tokens
        if tokens[:1] == ["celerinfer"]:
            self.args = tokens[1:]
        elif tokens[:3] == ["python", "-m", "celerinfer"]:
            self.args = tokens[3:]
        else:
            self.args = None  # not a celerinfer command

    @property
    def is_celerinfer(self) -> bool:
        return self.args is not None

    @property
    def slow(self) -> bool:
        return SLOW_MARK in self.comment

    @property
    def expected_status(self) -> int:
        m = re.search(r"exit status (\d+)", self.comment)
        return int(m.group(1)) if m else 0

    @property
    def needs_torch(self) -> bool:
        return "--backend torch" in self.text

    def __repr__(self) -> str:
        return f"{self.where}: {self.text}"


def shell_lines(text: str, where: str) -> list[Command]:
    """The commands of a bash block (continuations joined, comment lines dropped)."""
    commands, pending = [], ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line.startswith("#"):
            continue
        command, comment = split_comment(line)
        commands.append(Command(command, comment, where))
    assert not pending, f"{where}: a bash block ends with a line continuation"
    return commands


def page_items(path: Path) -> list[tuple[str, object, int]]:
    """The page's runnable items in document order: ('cmd', Command, line) and ('py', code, line)."""
    items = []
    for lang, text, line in blocks(path):
        if lang == "bash":
            for cmd in shell_lines(text, f"{path.name}:{line}"):
                items.append(("cmd", cmd, line))
        elif lang == "python":
            items.append(("py", text, line))
    return items


def all_commands() -> list[Command]:
    return [item for path in guide_files() for kind, item, _ in page_items(path) if kind == "cmd"]


def celerinfer_commands() -> list[Command]:
    return [c for c in all_commands() if c.is_celerinfer]


# ---- fast checks -------------------------------------------------------------------------------

def test_the_guide_has_its_pages():
    assert sorted(p.stem for p in guide_files()) == sorted(PAGES)


def test_every_shell_line_is_a_celerinfer_command_or_a_setup_step():
    for cmd in all_commands():
        if not cmd.is_celerinfer:
            assert " ".join(cmd.tokens).startswith(SETUP_PREFIXES), f"not a celerinfer command: {cmd!r}"


def strict_parser():
    """The CLI's parser, refusing abbreviated flags (the guide spells every flag out)."""
    parser = build_parser()
    parser.allow_abbrev = False
    for sub in _subparsers(parser).values():
        sub.allow_abbrev = False
    return parser


@pytest.mark.parametrize("cmd", celerinfer_commands(), ids=repr)
def test_command_parses(cmd):
    """The real parser accepts the command: a flag or choice that does not exist fails here."""
    try:
        args = strict_parser().parse_args(cmd.args)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help / --version exit 0
            pytest.fail(f"the CLI parser refuses a command of the guide ({cmd!r}): exit {exc.code}")
    else:
        assert callable(args.func)


def test_slow_exceptions_are_the_listed_ones():
    slow = {c.text for c in celerinfer_commands() if c.slow}
    assert slow == SLOW_EXCEPTIONS


def _subparsers(parser=None):
    parser = parser or build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_cli_page_covers_every_command_and_flag():
    text = (GUIDE / "cli.md").read_text()
    ran = {c.args[0] for c in celerinfer_commands() if c.where.startswith("cli.md") and c.args}
    commands = _subparsers()
    assert set(commands) <= ran, f"commands without an example in cli.md: {sorted(set(commands) - ran)}"
    for name, sub in commands.items():
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert re.search(re.escape(flag) + r"(?![\w-])", text), f"cli.md never names {name} {flag}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def test_relative_links_point_to_existing_files():
    for path in guide_files():
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.name}: broken link {target}"
            if anchor and dest.suffix == ".md" and dest.parent == GUIDE:
                assert anchor in _anchors(dest), f"{path.name}: no heading for the anchor {target}"


# ---- running the guide -------------------------------------------------------------------------

def prepare(folder: Path) -> Path:
    """Writes every file the guide's examples start from into `folder`."""
    config = celerinfer.ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
                                    num_key_value_heads=2, vocab_size=256, max_position_embeddings=256)
    # what `celerinfer random-model ... --vocab 256 --max-pos 256 --output model.json` writes
    model = celerinfer.random_model(config, seed=123)
    ids = celerinfer.random_tokens(2, 5, 256, seed=123)
    model.set_inputs(ids, np.ones_like(ids))
    model.save(folder / "model.json")
    model.save(folder / "model.safetensors")
    model.save(folder / "model.gguf")
    (folder / "prompts.txt").write_text("The future of AI\n\nOnce upon a time\nKV caches trade memory for speed\n")
    (folder / "corpus.txt").write_text(
        "A key-value cache keeps the keys and values of every token a transformer has seen, so that "
        "each new token attends over them instead of recomputing the whole sequence. Quantizing the "
        "cache to eight bits shrinks it about four times; sharing it between layers halves it again. "
        "Whether the model still predicts the same tokens is what the perplexity benchmark measures.\n")
    yaml_blocks = [text for lang, text, _ in blocks(GUIDE / "cli.md") if lang == "yaml" and
                   text.startswith("# my_study.yaml")]
    assert len(yaml_blocks) == 1, "cli.md must hold one yaml block starting with '# my_study.yaml'"
    (folder / "my_study.yaml").write_text(yaml_blocks[0])
    grids = [text for lang, text, _ in blocks(GUIDE / "sweeps.md") if lang == "yaml" and text.startswith("# grid.yaml")]
    assert len(grids) == 1, "sweeps.md must hold one yaml block starting with '# grid.yaml'"
    (folder / "grid.yaml").write_text(grids[0])
    logits = model.forward(ids, np.ones_like(ids))
    (folder / "out").mkdir()
    celerinfer.save_npy(folder / "out" / "logits_cpp.npy", logits)
    if HAVE_TORCH:
        from celerinfer import reference

        celerinfer.save_npy(folder / "out" / "logits_torch.npy", reference.logits(model, ids))
    else:  # pragma: no cover
        celerinfer.save_npy(folder / "out" / "logits_torch.npy", logits)
    (folder / "random").mkdir()
    celerinfer.save_npy(folder / "random" / "logits_cpp.npy", model.forward(celerinfer.random_tokens(1, 16, 256, 3)))
    # a results log holding two comparable runs
    from celerinfer.bench import load_config, run_benchmarks

    cfg = load_config(preset="tiny", overrides={"versions": ["v1", "v2"], "T_values": [8, 16], "num_measure_runs": 5})
    for _ in range(2):
        run_benchmarks(cfg, ["latency", "memory"], log_file=folder / "results" / "results.jsonl", progress=False)
    return folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare(tmp_path_factory.mktemp("guide-files"))


def _run_command(cmd: Command, folder: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(folder / "cache"), **cmd.env)
    proc = subprocess.run([sys.executable, "-m", "celerinfer", *cmd.args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != cmd.expected_status:
        pytest.fail(f"{cmd!r}\nexit status {proc.returncode}, the guide says {cmd.expected_status}\n"
                    f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def _run_python(code: str, namespace: dict, where: str) -> None:
    try:
        exec(compile(code, where, "exec"), namespace)
    except Exception:  # noqa: BLE001 - report any failure with the block's place
        pytest.fail(f"{where}: the python block raised\n{traceback.format_exc()}")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_runs(page, prepared, tmp_path, monkeypatch, capsys):
    """Every command (but the listed slow ones) and every python block of the page, in order."""
    path = GUIDE / f"{page}.md"
    folder = tmp_path / "work"
    shutil.copytree(prepared, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
    threads = celerinfer.get_num_threads()
    namespace: dict = {"__name__": f"guide_{page.replace('-', '_')}"}
    skipped = []
    try:
        for kind, item, line in page_items(path):
            if kind == "cmd":
                if item.slow or not item.is_celerinfer:  # setup steps are not run
                    continue
                if item.needs_torch and not HAVE_TORCH:  # pragma: no cover
                    skipped.append(repr(item))
                    continue
                _run_command(item, folder)
            else:
                if not HAVE_TORCH and re.search(r"\btorch\b|\breference\b", item):  # pragma: no cover
                    skipped.append(f"{path.name}:{line} python block")
                    continue
                with warnings.catch_warnings():
                    _run_python(item, namespace, f"{path.name}:{line}")
    finally:
        celerinfer.set_num_threads(threads)
    capsys.readouterr()
    if skipped:  # pragma: no cover
        pytest.skip("needs torch: " + "; ".join(skipped))
