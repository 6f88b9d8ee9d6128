"""atheris fuzz target: the tokenizer a GGUF file's metadata describes
(python/celerinfer/io/gguf_tokenizer.py) and its chat template.

The input bytes become a metadata mapping as the GGUF reader returns it (tokenizer.ggml.model,
tokens, merges, scores, token_type, pre, BOS / EOS ids, add_bos_token, chat_template), then
the tokenizer is built and used: encode, decode, token_text, apply_chat_template. A bad
tokenizer must be refused with a ValueError (celerinfer.FormatError is one); any other
exception is a finding. Not part of the pytest run (scripts/fuzz.sh runs it).

Usage: python cpp/fuzz/fuzz_gguf_tokenizer.py [libFuzzer flags] [CORPUS_DIR...]
       python cpp/fuzz/fuzz_gguf_tokenizer.py --make-seeds DIR
"""

from __future__ import annotations

import struct
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["celerinfer.io.gguf_tokenizer"]):
    from celerinfer.io.gguf_tokenizer import GGUFTokenizer

KINDS = ["gpt2", "llama", "bert", ""]
PRES = [None, "default", "gpt2", "smollm", "llama-bpe", "llama3", "qwen2", "xyz"]
TEMPLATES = [None, "", "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
             "{% if add_generation_prompt %}<|assistant|>{% endif %}",
             "{{ bos_token }}{{ messages[0]['content'] | upper }}{{ eos_token }}",
             "{{ raise_exception('no') }}", "{{ ''.__class__.__mro__ }}", "{% for %}", "{{ messages[9] }}"]


def metadata_from(fdp: atheris.FuzzedDataProvider) -> tuple[dict, int]:
    n = fdp.ConsumeIntInRange(0, 40)
    tokens = [fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 6)) for _ in range(n)]
    if fdp.ConsumeBool():  # the byte tokens SentencePiece files carry
        tokens += [f"<0x{b:02X}>" for b in range(0, 256, fdp.ConsumeIntInRange(1, 64))]
    md: dict = {"tokenizer.ggml.model": fdp.PickValueInList(KINDS), "tokenizer.ggml.tokens": tokens}
    if fdp.ConsumeBool():
        md["tokenizer.ggml.merges"] = [
            fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 6)) if fdp.ConsumeBool()
            else f"{fdp.PickValueInList(tokens or ['a'])} {fdp.PickValueInList(tokens or ['b'])}"
            for _ in range(fdp.ConsumeIntInRange(0, 30))]
    if fdp.ConsumeBool():
        md["tokenizer.ggml.scores"] = [fdp.ConsumeFloat() for _ in range(fdp.ConsumeIntInRange(0, len(tokens) + 2))]
    if fdp.ConsumeBool():
        md["tokenizer.ggml.token_type"] = [fdp.ConsumeIntInRange(0, 7) for _ in range(fdp.ConsumeIntInRange(0, len(tokens) + 2))]
    if fdp.ConsumeBool():
        md["tokenizer.ggml.pre"] = fdp.PickValueInList(PRES)
    for key in ("bos_token_id", "eos_token_id", "eot_token_id"):
        if fdp.ConsumeBool():
            md["tokenizer.ggml." + key] = fdp.ConsumeIntInRange(-2, len(tokens) + 2)
    for key in ("add_bos_token", "add_space_prefix"):
        if fdp.ConsumeBool():
            md["tokenizer.ggml." + key] = fdp.ConsumeBool()
    template = fdp.PickValueInList(TEMPLATES)
    if fdp.ConsumeBool():
        template = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 60))
    if template is not None:
        md["tokenizer.chat_template"] = template
    vocab = len(tokens) + fdp.ConsumeIntInRange(-1, 4)
    return md, vocab


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    md, vocab = metadata_from(fdp)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    try:
        tok = GGUFTokenizer(md, vocab, source="fuzz.gguf")
    except ValueError:
        return
    ids = tok.encode(text)
    if not all(isinstance(i, int) for i in ids):
        raise AssertionError("encode returned a non-int id")
    tok.decode(ids)
    tok.decode(ids, skip_special_tokens=False)
    if ids:
        tok.token_text(ids[0])
    try:
        tok.apply_chat_template([{"role": "user", "content": text}])
    except ValueError:
        pass


def make_seeds(folder: Path) -> None:
    """A few random inputs (the provider's format is not a file format: any bytes are valid)."""
    import random

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i in range(16):
        (folder / f"random-{i}").write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(16, 400))))
    (folder / "zeros").write_bytes(struct.pack("<64I", *([0] * 64)))


if __name__ == "__main__":
    from atheris_main import main  # beside this file: python puts the script's folder on sys.path

    main(make_seeds, test_one_input)
