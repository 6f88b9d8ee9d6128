"""`celerinfer report` and `celerinfer show` on real runs: every plot the seeds name produced by
one command, the page self-contained (every image embedded and a valid PNG), the weight formats
and the machine named on it, a PDF of the same; the terminal view's bars."""

import base64
import html
import os
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import celerinfer

# seed 004's eight plots, seed 001's two, seed 002's (plot_results.py: latency and memory vs T,
# the per-phase breakdown, quality, the roofline, the speedup)
SEED_PLOTS = {"backend_comparison", "speedup_comparison", "summary_stats", "quantization_impact",
              "latency_distribution", "memory_throughput", "param_throughput", "device_comparison",
              "optimization_comparison", "performance_over_time",
              "latency_vs_T", "memory_vs_T", "phase_breakdown", "quality", "roofline", "speedup"}


def cli(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "celerinfer", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "XDG_CACHE_HOME": str(Path(cwd) / "cache")})
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """A real sweep (two weight formats), a quality run of two formats, a backend comparison and
    a run-mode benchmark, each in its own log as the commands write them."""
    root = tmp_path_factory.mktemp("report")
    grid = {"name": "formats", "benchmarks": ["latency", "memory", "phase", "roofline"], "preset": "tiny",
            "prompt_length": 8, "T_values": [8, 16], "T_star": 8, "num_warmup_runs": 1, "num_measure_runs": 4,
            "threads": 2, "grid": {"weight_dtype": ["f32", "int8"], "versions": [["v0", "v1", "v2"]]},
            "log_file": "results/results.jsonl"}
    (root / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    cli("sweep", "grid.yaml", "--no-progress", cwd=root)
    cli("bench", "perplexity", "--preset", "tiny", "--version", "v1", "v2", "--quality-weight-dtypes", "f32", "int8",
        "--log-file", "results/results.jsonl", "--no-progress", cwd=root)
    cli("bench", "compare", "--preset", "tiny", "--backends", "celerinfer", "torch", "--repeats", "2",
        "--gen-len", "4", "--prompt-length", "12", "--weight-dtypes", "f32", "int8", "--log-file",
        "results/results.jsonl", "--no-progress", cwd=root)
    model = root / "m.safetensors"
    celerinfer.random_model(celerinfer.ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                   num_key_value_heads=2, vocab_size=300,
                                                   max_position_embeddings=128), seed=0).save(model)
    cli("run", "--model", model, "--prompt", "Hello", "--max-length", 6, "--benchmark", "--warmup", 0, cwd=root)
    return root


@pytest.fixture(scope="module")
def report(logs):
    out = cli("report", "--log-file", "results/results.jsonl", "--log-file", "inference_benchmarks/results.jsonl",
              "--out", "report.html", cwd=logs)
    return logs, out, (logs / "report.html").read_text(encoding="utf-8")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_one_command_draws_every_plot_the_seeds_name(report):
    _, out, page = report
    captions = {html.unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page)}
    names = {c.rsplit("/", 1)[-1] for c in captions}
    assert SEED_PLOTS <= names, SEED_PLOTS - names
    assert "plots)" in out and "report.pdf" in out


def test_the_page_is_self_contained_and_every_image_decodes(report):
    _, _, page = report
    images = re.findall(r'src="([^"]*)"', page)
    assert len(images) >= len(SEED_PLOTS)
    for src in images:
        assert src.startswith("data:image/png;base64,"), src[:40]  # nothing outside the page
        width, height = png_size(base64.b64decode(src.split(",", 1)[1], validate=True))
        assert width >= 600 and height >= 300
    assert "<link" not in page and "<script" not in page


def test_the_page_names_the_formats_the_machine_and_the_confidence(report):
    _, _, page = report
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r'src="[^"]*"', "", page)))
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    for words in ("f32", "int8", cpu, socket.gethostname(), "Machines", "bandwidth ceiling", "What was compared",
                  "Speedup over v0", "95% CI", "noise guard", "Backends on the same file", "Run mode"):
        assert words in text, words
    assert re.search(r"\d+\.\d\d GB/s", text)  # the ceilings the run measured (roofline calibrates)


def test_the_pdf_holds_the_text_and_every_plot(report):
    root, _, page = report
    pdf = (root / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pages >= 1 + page.count("<figure>")


def test_show_draws_bars_of_the_latest_run(logs):
    out = cli("show", "--log-file", "results/results.jsonl", "--width", "90", cwd=logs)
    assert "decode speed by backend" in out and "█" in out  # the latest run: the comparison
    plain = cli("show", "--log-file", "results/results.jsonl", "--width", "90", "--ascii", "previous", cwd=logs)
    assert "perplexity (lower is better)" in plain and "#" in plain and "█" not in plain
    assert max(len(line) for line in plain.splitlines()) <= 140
