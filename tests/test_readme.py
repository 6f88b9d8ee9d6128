"""The README's Python example runs as written (in a temporary folder)."""

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
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), {})
    out = capsys.readouterr().out
    assert "MATCH:" in out and "MISMATCH" not in out
