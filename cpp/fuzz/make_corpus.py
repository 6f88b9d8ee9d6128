"""Seed corpus for the fuzz targets in cpp/fuzz (scripts/fuzz.sh runs this).

Writes OUT/<target>/<name> for each target (safetensors, gguf, seed_json, base64, json,
config_json): tiny random models saved by the installed celerinfer package in every format and
weight type it writes, the hand-built GGUF file of tests/gguf_files.py (tokenizer arrays
included), and the hostile variants the Python tests make (tests/test_bad_input.py's
BAD_EDITS and BAD_SAFETENSORS), plus a few mutations of our own (truncations, huge counts).
Small files on purpose: the fuzzer's speed falls with the input size.

Usage: python cpp/fuzz/make_corpus.py OUT
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import celerinfer  # noqa: E402
from celerinfer import ModelConfig  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, vocab_size=16,
            max_position_embeddings=8, intermediate_size=32)


class Corpus:
    def __init__(self, out: Path):
        self.out = out
        self.counts: dict[str, int] = {}

    def add(self, target: str, data: bytes | str, name: str = "") -> None:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        folder = self.out / target
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(raw).hexdigest()[:12]
        path = folder / f"{name or 'seed'}-{digest}"
        if not path.exists():
            path.write_bytes(raw)
            self.counts[target] = self.counts.get(target, 0) + 1


def tiny_models():
    """(name, model) for every architecture the formats hold, tied and untied."""
    out = []
    for arch in ("llama", "qwen2", "gpt2"):
        for tied in (False, True):
            try:
                sizes = {**TINY, "num_key_value_heads": TINY["num_attention_heads"]} if arch == "gpt2" else TINY
                cfg = ModelConfig(architecture=arch, tie_word_embeddings=tied, **sizes)
                out.append((f"{arch}{'-tied' if tied else ''}", celerinfer.random_model(cfg, seed=len(out))))
            except Exception as e:  # an architecture this build does not have
                print(f"make_corpus: skipping {arch}: {e}", file=sys.stderr)
    return out


def truncations(raw: bytes):
    """A few prefixes of a file: cut in the header, mid-way, one byte short."""
    for n in sorted({4, 8, 16, 24, 40, len(raw) // 3, len(raw) // 2, len(raw) - 1}):
        if 0 < n < len(raw):
            yield n, raw[:n]


def safetensors_seeds(c: Corpus, models, tmp: Path) -> bytes:
    first = b""
    for name, model in models:
        path = tmp / f"{name}.safetensors"
        model.save(path)
        raw = path.read_bytes()
        first = first or raw
        c.add("safetensors", raw, name)
        (n,) = struct.unpack("<Q", raw[:8])
        header = raw[8 : 8 + n]
        c.add("json", header, f"st-header-{name}")
        meta = json.loads(header).get("__metadata__", {})
        if "celerinfer.config" in meta:
            c.add("config_json", meta["celerinfer.config"], f"ours-{name}")
    # Hostile variants, as the Python tests make them (their model differs; the edits apply).
    try:
        from test_bad_input import BAD_SAFETENSORS, NAME  # noqa: F401

        llama = next(m for n, m in models if n == "llama")
        path = tmp / "bad-base.safetensors"
        llama.save(path)
        raw = path.read_bytes()
        for case, edit in sorted(BAD_SAFETENSORS.items()):
            try:
                c.add("safetensors", edit(raw), "bad-" + case.replace(" ", "_"))
            except Exception:
                pass  # an edit written for the tests' model size
    except Exception as e:
        print(f"make_corpus: tests/test_bad_input.py's safetensors cases unavailable: {e}", file=sys.stderr)
    for n, cut in truncations(first):
        c.add("safetensors", cut, f"cut{n}")
    # The weights as F16 / BF16 / F64 (converted on load), with the data section 8-byte aligned
    # as writers pad it, and one byte off (the format does not require alignment).
    (n,) = struct.unpack("<Q", first[:8])
    header = json.loads(first[8 : 8 + n])
    for dtype in ("F16", "BF16", "F64"):
        for skew in (0, 1):
            c.add("safetensors", converted_safetensors(header, first[8 + n :], dtype, skew), f"{dtype}-skew{skew}")
    text = json.dumps({"__metadata__": header.get("__metadata__", {})}).encode()
    c.add("safetensors", struct.pack("<Q", len(text)) + text, "metadata-only")
    return first


def converted_safetensors(header: dict, data: bytes, dtype: str, skew: int) -> bytes:
    """The F32 file (`header`, `data`) with every tensor stored as `dtype`; `skew` extra header
    bytes move the data section off its 8-byte alignment."""
    import numpy as np

    out, blob = {}, b""
    for key, entry in header.items():
        if key == "__metadata__":
            out[key] = entry
            continue
        begin, end = entry["data_offsets"]
        x = np.frombuffer(data[begin:end], dtype="<f4")
        if dtype == "BF16":
            raw = (x.view("<u4") >> 16).astype("<u2").tobytes()
        else:
            raw = x.astype({"F16": "<f2", "F64": "<f8"}[dtype]).tobytes()
        out[key] = {"dtype": dtype, "shape": entry["shape"], "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    text = json.dumps(out).encode()
    text += b" " * ((-len(text)) % 8 + skew)
    return struct.pack("<Q", len(text)) + text + blob


def seed_json_seeds(c: Corpus, models, tmp: Path) -> None:
    llama = [(n, m) for n, m in models if n.startswith("llama")]
    doc = None
    for name, model in llama:
        model.set_inputs(celerinfer.random_tokens(1, 4, TINY["vocab_size"], seed=3))
        path = tmp / f"{name}.json"
        model.save(path)
        text = path.read_text()
        c.add("seed_json", text, name)
        d = json.loads(text)
        doc = doc or d
        c.add("config_json", json.dumps(d["config"]), f"seed-config-{name}")
        for record in (d["weights"]["final_rms"], d["inputs"]["input_ids"]):
            c.add("base64", record["data"], "seed-record")
    if doc is None:
        return
    c.add("json", json.dumps(doc["config"]), "seed-config")
    c.add("json", json.dumps(doc["weights"]["final_rms"]), "seed-record")
    try:
        from test_bad_input import BAD_EDITS

        for case, (edit, _) in sorted(BAD_EDITS.items()):
            d = copy.deepcopy(doc)
            try:
                edit(d)
            except Exception:
                continue
            c.add("seed_json", json.dumps(d), "bad-" + case.replace(" ", "_"))
    except Exception as e:
        print(f"make_corpus: tests/test_bad_input.py's seed JSON cases unavailable: {e}", file=sys.stderr)
    text = json.dumps(doc)
    for n, cut in truncations(text.encode()):
        c.add("seed_json", cut, f"cut{n}")
    escaped = text.replace("/", "\\/")  # writers that escape '/' in base64
    c.add("seed_json", escaped, "escaped-slashes")


def gguf_seeds(c: Corpus, models, tmp: Path) -> None:
    first = b""
    for name, model in models:
        if not name.startswith(("llama", "qwen2")):
            continue
        for wtype in ("f32", "f16", "q8_0", "q4_0", "q4_1"):
            path = tmp / f"{name}-{wtype}.gguf"
            try:
                model.save(path, weight_dtype=wtype)
            except Exception as e:
                print(f"make_corpus: gguf {name} {wtype}: {e}", file=sys.stderr)
                continue
            raw = path.read_bytes()
            first = first or raw
            c.add("gguf", raw, f"{name}-{wtype}")
    # The tests' hand-built file (real tokenizer arrays, chat template), shrunk to fuzzing size.
    try:
        import gguf_files as g

        g.HIDDEN, g.HEADS, g.KV_HEADS, g.LAYERS, g.FFN, g.VOCAB, g.CONTEXT = 32, 2, 1, 1, 32, 16, 16
        f = g.small_llama(seed=1)
        f.set("tokenizer.chat_template", g.STRING, "{% for m in messages %}{{ m['content'] }}{% endfor %}")
        f.set("tokenizer.ggml.scores", g.ARRAY, (g.F32, [float(-i) for i in range(g.VOCAB)]))
        f.set("tokenizer.ggml.bos_token_id", g.U32, 1)
        f.set("general.alignment", g.U32, 32)
        c.add("gguf", f.to_bytes(), "tests-small-llama")
        # Its float tensors as F16 (converted on load), at the default and a too small alignment.
        import numpy as np

        for t in f.tensors:
            if t.ggml_type == g.T_F32:
                t.ggml_type, t.data = g.T_F16, np.frombuffer(t.data, dtype="<f4").astype("<f2").tobytes()
        c.add("gguf", f.to_bytes(), "tests-small-llama-f16")
        f.alignment = 1
        f.set("general.alignment", g.U32, 1)
        f.set("general.name", g.STRING, "odd")
        c.add("gguf", f.to_bytes(), "tests-small-llama-f16-align1")
        for case, edit in {
            "kv-count-huge": lambda f: setattr(f, "kv_count", 1 << 60),
            "tensor-count-huge": lambda f: setattr(f, "tensor_count", 1 << 60),
            "version-1": lambda f: setattr(f, "version", 1),
            "alignment-3": lambda f: f.set("general.alignment", g.U32, 3),
            "tokens-short": lambda f: f.set("tokenizer.ggml.tokens", g.ARRAY, (g.STRING, ["a", "b"])),
            "nested-array": lambda f: f.set("x.nested", g.ARRAY, (g.ARRAY, [])),
            "arch-unknown": lambda f: f.set("general.architecture", g.STRING, "mamba"),
            "offset-unaligned": lambda f: setattr(f.tensors[1], "offset", 3),
            "dims-zero": lambda f: setattr(f.tensors[0], "dims", [0, 16]),
            "type-unknown": lambda f: setattr(f.tensors[0], "ggml_type", 99),
        }.items():
            h = g.small_llama(seed=1)
            edit(h)
            try:
                c.add("gguf", h.to_bytes(), case)
            except Exception as e:
                print(f"make_corpus: gguf case {case}: {e}", file=sys.stderr)
    except Exception as e:
        print(f"make_corpus: tests/gguf_files.py unavailable: {e}", file=sys.stderr)
    for n, cut in truncations(first):
        c.add("gguf", cut, f"cut{n}")
    c.add("gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 0), "empty")


def hf_config_seeds(c: Corpus, models, tmp: Path) -> None:
    for name, model in models:
        folder = tmp / f"hf-{name}"
        try:
            model.save(folder)
        except Exception as e:
            print(f"make_corpus: HF folder {name}: {e}", file=sys.stderr)
            continue
        config = (folder / "config.json").read_text()
        c.add("config_json", config, f"hf-{name}")
        c.add("json", config, f"hf-{name}")
        cfg = json.loads(config)
        if name == "llama":
            for edit in ({"model_type": "mistral", "sliding_window": 4}, {"model_type": "minimind"},
                         {"rope_scaling": {"rope_type": "default", "rope_theta": 5e5}},
                         {"rope_scaling": {"type": "yarn"}}, {"layer_types": ["full_attention"]},
                         {"intermediate_size": None}, {"head_dim": 7}, {"architectures": ["LlamaForSequenceClassification"]}):
                c.add("config_json", json.dumps({**cfg, **edit}), "hf-edit")


def misc_seeds(c: Corpus, raw_model: bytes) -> None:
    for text in ("", "Zg==", "Zm8=", "Zm9v", "Zm9vYmFy", "Zm9vYg=", "====", "Zm9v!mFy", "Zg==Zg==", "A\nB="):
        c.add("base64", text, "vector")
    c.add("base64", base64.b64encode(raw_model[:300]).decode(), "model-bytes")
    for text in ('{"a": [1, 2.5e-3, -0, true, false, null], "b": {"c": "d"}}',
                 '"\\u00e9\\ud83d\\ude00\\ud800 \\n\\t\\"\\\\\\/"', "[NaN, Infinity, -Infinity, 1e999, -1e-999]",
                 "[" * 70 + "]" * 70, '{"k": 1, "k": 2}', "[1,]", '{"a" 1}', "\"\x01\"", "123456789012345678901234567890"):
        c.add("json", text, "hand")
        c.add("config_json", text, "hand")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    c = Corpus(Path(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = tiny_models()
        raw = safetensors_seeds(c, models, tmp)
        seed_json_seeds(c, models, tmp)
        gguf_seeds(c, models, tmp)
        hf_config_seeds(c, models, tmp)
        misc_seeds(c, raw)
    for target in ("safetensors", "gguf", "seed_json", "base64", "json", "config_json"):
        (c.out / target).mkdir(parents=True, exist_ok=True)
    print("make_corpus: " + ", ".join(f"{t} {n}" for t, n in sorted(c.counts.items())) + f" new seeds in {c.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
