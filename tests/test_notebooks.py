"""The notebooks in notebooks/ run top to bottom and show what they say they show.

Each notebook is executed with nbclient in a fresh kernel that runs this interpreter (a kernel
spec written for ``sys.executable``, so a kernel registered elsewhere cannot stand in), with a
temporary directory as its working directory. A cell that raises fails the test with the
cell's traceback (nbclient's CellExecutionError). The committed files are checked too: they
are committed executed, top to bottom, with their outputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import celerinfer

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = ("01_quickstart.ipynb", "02_kv_cache_study.ipynb", "03_roofline.ipynb")
CELL_TIMEOUT_S = 600   # the KV-cache study scores 2 x 640 tokens through twelve caches in one cell (~4 min)
MAX_NOTEBOOK_BYTES = 1_000_000
KERNEL_NAME = "celerinfer-test-python"
NEEDS = "the notebook tests need nbclient, nbformat and ipykernel (pip install '.[test]')"
VERSIONS = [v["name"] for v in celerinfer.versions()]
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# jupyter_core 5.0-5.2 warn on import about their future paths; nothing to do with the notebooks
pytestmark = pytest.mark.filterwarnings("ignore:Jupyter is migrating its paths:DeprecationWarning")


# ---- helpers ---------------------------------------------------------------------------------

def code_cells(nb) -> list:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_text(nb) -> str:
    """Everything the code cells printed or returned as text, in order."""
    parts = []
    for cell in code_cells(nb):
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append(_text(out["text"]))
            elif "data" in out and "text/plain" in out["data"] and "image/png" not in out["data"]:
                parts.append(_text(out["data"]["text/plain"]))
    return "\n".join(parts)


def image_count(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in code_cells(nb) for out in cell.get("outputs", []))


# ---- the committed notebooks (no kernel needed) ------------------------------------------------

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_executed_top_to_bottom(name):
    path = NOTEBOOK_DIR / name
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{name} is {path.stat().st_size:,} bytes: shrink its images"
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and _text(first["source"]).startswith("# "), "first cell: a title"
    assert "Runtime" in _text(first["source"]), "the first cell says how long the notebook takes"
    cells = code_cells(nb)
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1)), \
        "committed outputs come from one run, top to bottom"
    for cell in cells:
        assert not any(o["output_type"] == "error" for o in cell["outputs"]), _text(cell["source"])[:200]
    assert image_count(nb) >= 1


# ---- executing them ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """The name of a kernel spec that runs this interpreter, found through JUPYTER_PATH."""
    pytest.importorskip("nbformat", reason=NEEDS)
    pytest.importorskip("nbclient", reason=NEEDS)
    kernelspec = pytest.importorskip("ipykernel.kernelspec", reason=NEEDS)
    root = tmp_path_factory.mktemp("jupyter")
    kernelspec.write_kernel_spec(root / "kernels" / KERNEL_NAME)  # argv: sys.executable -m ipykernel_launcher
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        yield KERNEL_NAME


def execute(nb, kernel: str, cwd: Path):
    """Runs every cell of nb in order (outputs cleared first); raises CellExecutionError at the
    first cell that fails."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for cell in code_cells(nb):
        cell.outputs = []
        cell.execution_count = None
    try:
        NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}).execute()
    except CellExecutionError as exc:  # the same error, its traceback without the terminal colors
        raise CellExecutionError(ANSI_ESCAPE.sub("", str(exc)), exc.ename, exc.evalue) from None
    return nb


def run_notebook(name: str, kernel: str, tmp_path: Path):
    import nbformat

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    nb = execute(nbformat.read(NOTEBOOK_DIR / name, as_version=4), kernel, cwd)
    assert list(cwd.iterdir()) == [], "the notebook wrote into its working directory"
    return nb


@pytest.mark.slow
def test_quickstart_runs(kernel, tmp_path):
    pytest.importorskip("torch", reason="the quickstart's parity section needs PyTorch")
    nb = run_notebook("01_quickstart.ipynb", kernel, tmp_path)
    text = output_text(nb)
    assert re.search(r"^MATCH: max abs err", text, re.M), "the parity cell printed its MATCH report"
    assert "MISMATCH" not in text
    for v in VERSIONS:
        assert re.search(rf"^{v}\s+\[", text, re.M), f"{v} is missing from the generation table"
        assert f"{v}: engine tokens == reference tokens: True" in text
    assert image_count(nb) >= 1


def quality_table(text: str) -> dict[str, tuple[float, float, float]]:
    """The KV-cache study's quality table: {version: (perplexity, KL vs v1, top-1 %)}."""
    rows = re.findall(r"^(v\d+)\s+(\d+\.\d+)\s+(\S+)\s+(\d+\.\d)%$", text, re.M)
    return {v: (float(ppl), float(kl), float(top1)) for v, ppl, kl, top1 in rows}


@pytest.mark.slow
def test_kv_cache_study_runs(kernel, tmp_path):
    from celerinfer.io.packaged_models import PACKAGED_MODELS, packaged_model_path

    try:
        packaged_model_path("smollm2")
    except ImportError:
        pytest.skip(f"the KV-cache study runs on SmolLM2, not installed ({PACKAGED_MODELS['smollm2'].install})")
    nb = run_notebook("02_kv_cache_study.ipynb", kernel, tmp_path)
    text = output_text(nb)
    assert "analytic == measured: True" in text
    assert "<Figure" not in text, "a figure was printed as text instead of drawn"
    assert image_count(nb) >= 7  # latency, memory, bytes per token, quality, by position, two trade-offs
    table = quality_table(text)
    assert sorted(table) == sorted(VERSIONS), "every version is in the quality table"
    # a trained model on English text: far better than a uniform guess over 49,152 tokens
    assert table["v1"][0] < 50
    # what the notebook's text says of the methods: fp16 < KIVI-4 < KIVI-2 in KL, sharing far worse
    assert 0 < table["v5"][1] < table["v7"][1] < table["v8"][1] < table["v3"][1]
    # eviction acts only once the window passes the 512-token budget
    for v in ("v9", "v10"):
        row = re.search(rf"^{v}\s+(\S+)\s+(\S+)$", text, re.M)  # the 'KL before / from 512' table
        assert row, f"{v} is missing from the table of KL along the window"
        before, after = (float(x) for x in row.groups())
        assert before == 0 < after, f"{v}: KL before / from position 512"


@pytest.mark.slow
def test_roofline_runs(kernel, tmp_path):
    nb = run_notebook("03_roofline.ipynb", kernel, tmp_path)
    text = output_text(nb)
    assert re.search(r"ridge point\s+\d+\.\d+ flop/byte", text)
    # decode at batch 1 does ~0.5 flop/byte: memory-bound, analytically and as measured
    assert re.search(r"^1b\s+decode, context 128 .* 0\.5\d\s+memory", text, re.M)
    assert len(re.findall(r"^v1\s+decode\s+0\.5\d\s.*memory$", text, re.M)) == 2  # tiny and minimind
    assert "<Figure" not in text
    assert image_count(nb) >= 3  # intensity vs batch, two measured rooflines


@pytest.mark.slow
def test_a_failing_cell_fails_the_run(kernel, tmp_path):
    """The harness above must not swallow errors: a notebook that breaks fails its test."""
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK_DIR / "01_quickstart.ipynb", as_version=4)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells = nb.cells[: first_code + 1] + [nbformat.v4.new_code_cell('raise RuntimeError("deliberately broken")'),
                                             nbformat.v4.new_code_cell('print("never reached")')]
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="deliberately broken"):
        execute(nb, kernel, tmp_path)
    assert nb.cells[-1].outputs == []
