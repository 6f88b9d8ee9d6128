"""The tokenizer a GGUF file describes in its metadata, built with the ``tokenizers`` library,
and its chat template (Jinja, sandboxed).

llama.cpp stores two kinds (``tokenizer.ggml.model``):

* ``gpt2``: byte-level BPE. ``tokens`` (the vocabulary, in id order) and ``merges`` ("a b",
  by rank); text is split before the merges by the pre-tokenizer ``tokenizer.ggml.pre`` names
  (GPT-2's pattern by default; ``smollm`` splits digits one by one first, ``llama-bpe`` and
  ``qwen2`` have their own patterns).
* ``llama``: SentencePiece-style BPE. ``tokens`` with ``scores``: pieces merge in the order of
  the merged piece's score; spaces are "▁" (U+2581), a space is put before the text when
  ``add_space_prefix`` says so, unknown bytes fall back to ``<0xNN>`` tokens.

``token_type`` marks control tokens (3: ``<|im_start|>``, ``</s>``, ...) and user-defined ones
(4): both are matched whole in text, as Hugging Face's tokenizers match added tokens, and
control tokens are dropped when decoding with ``skip_special_tokens``. ``add_bos_token``
(default: yes for ``llama``, no for ``gpt2``) puts ``bos_token_id`` first.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

# GGUF token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizer patterns llama.cpp names (the ones its llama-bpe and qwen2 types use).
_LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT2_PRE = ("default", "gpt2", "smollm", "", None)


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("a GGUF model's tokenizer needs the 'tokenizers' package: pip install tokenizers") from None
    return tokenizers


def _byte_level_bpe(tokens: Sequence[str], merges: Sequence[str], pre: str | None, add_space_prefix: bool):
    tk = _tokenizers()
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = []
    for i, merge in enumerate(merges):
        parts = merge.split(" ") if isinstance(merge, str) else []
        if len(parts) != 2:
            raise ValueError(f"tokenizer.ggml.merges[{i}] is {merge!r}, not two pieces separated by a space")
        # the tokenizers library raises a bare Exception (a piece it lacks) or panics (a merged
        # piece it lacks) on these: a message naming the merge instead
        missing = [p for p in (*parts, parts[0] + parts[1]) if p not in vocab]
        if missing:
            raise ValueError(f"tokenizer.ggml.merges[{i}] {merge!r} names {missing[0]!r}, which is not in the vocabulary")
        pairs.append((parts[0], parts[1]))
    tokenizer = tk.Tokenizer(models.BPE(vocab, pairs, fuse_unk=False, byte_fallback=False))
    if pre in _GPT2_PRE:
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=add_space_prefix, use_regex=True)
        tokenizer.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                                   if pre == "smollm" else byte_level)
    elif pre in ("llama-bpe", "llama3", "qwen2"):
        pattern = tk.Regex(_QWEN2_PATTERN if pre == "qwen2" else _LLAMA3_PATTERN)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern, behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=add_space_prefix, use_regex=False)])
    else:
        raise ValueError(f"tokenizer.ggml.pre {pre!r} is not supported (default, gpt2, smollm, llama-bpe, qwen2 are)")
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece_bpe(tokens: Sequence[str], scores: Sequence[float], add_space_prefix: bool):
    """SentencePiece's BPE from its pieces and scores: the merge of pieces a + b ranks by the
    score of the piece a + b (higher first), as SentencePiece applies them."""
    tk = _tokenizers()
    from tokenizers import decoders, models, normalizers

    vocab = {token: i for i, token in enumerate(tokens)}
    merges = []
    for piece, score in zip(tokens, scores):
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                merges.append((score, vocab[piece], left, right))
    merges.sort(key=lambda m: (-m[0], m[1]))
    model = models.BPE(vocab, [(a, b) for _, _, a, b in merges], fuse_unk=True, byte_fallback=True,
                       unk_token=tokens[0] if tokens else None)
    tokenizer = tk.Tokenizer(model)
    steps = [normalizers.Prepend("▁")] if add_space_prefix else []
    tokenizer.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
    tail = [decoders.Strip(" ", 1, 0)] if add_space_prefix else []
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()] + tail)
    return tokenizer


class GGUFTokenizer:
    """The tokenizer of a GGUF file's metadata (``Model.tokenizer`` of a GGUF model).

    ``encode(text)`` -> ids (with the file's BOS when it asks for one), ``decode(ids)`` -> text
    (special tokens left out unless asked), ``apply_chat_template(messages)`` -> the prompt text
    the model was trained on, ``stop_token_id``: where a chat answer ends (end of turn, else EOS).
    """

    covers_bytes = True

    def __init__(self, metadata: Mapping, vocab_size: int, source: str = "GGUF"):
        def get(key, default=None):
            return metadata.get(key, default) if hasattr(metadata, "get") else default

        kind = get("tokenizer.ggml.model")
        tokens = get("tokenizer.ggml.tokens")
        if kind is None or tokens is None:
            raise ValueError(f"{source} has no tokenizer (tokenizer.ggml.model / tokenizer.ggml.tokens)")
        self.name = f"gguf:{kind}"
        self.source = source
        self.vocab_size = int(vocab_size)
        self.tokens = list(tokens)
        bad = next((i for i, t in enumerate(self.tokens) if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"{source}: tokenizer.ggml.tokens[{bad}] is not a string")
        if len(self.tokens) > self.vocab_size:
            raise ValueError(f"{source}: {len(self.tokens)} tokens for a model of vocab_size {self.vocab_size}")
        types = list(get("tokenizer.ggml.token_type") or [NORMAL] * len(self.tokens))
        add_space_prefix = bool(get("tokenizer.ggml.add_space_prefix", kind == "llama"))
        if kind == "gpt2":
            self._tok = _byte_level_bpe(self.tokens, list(get("tokenizer.ggml.merges") or []),
                                        get("tokenizer.ggml.pre"), add_space_prefix)
        elif kind == "llama":
            scores = list(get("tokenizer.ggml.scores") or [0.0] * len(self.tokens))
            self._tok = _sentencepiece_bpe(self.tokens, scores, add_space_prefix)
        else:
            raise ValueError(f"{source}: tokenizer.ggml.model {kind!r} is not supported (gpt2 and llama are)")
        from tokenizers import AddedToken

        special = [AddedToken(t, special=True, normalized=False)
                   for t, kind_ in zip(self.tokens, types) if kind_ == CONTROL]
        user = [AddedToken(t, special=False, normalized=False)
                for t, kind_ in zip(self.tokens, types) if kind_ == USER_DEFINED]
        self._tok.add_special_tokens(special)
        self._tok.add_tokens(user)
        self.special_ids = {i for i, kind_ in enumerate(types) if kind_ == CONTROL}
        for key in ("bos", "eos", "eot"):  # an id outside the vocabulary would be encoded, then not decodable
            value = get(f"tokenizer.ggml.{key}_token_id")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < len(self.tokens)):
                raise ValueError(f"{source}: tokenizer.ggml.{key}_token_id is {value!r}, not an id of its "
                                 f"{len(self.tokens)} tokens")
        self.bos_token_id = get("tokenizer.ggml.bos_token_id")
        self.eos_token_id = get("tokenizer.ggml.eos_token_id")
        eot = get("tokenizer.ggml.eot_token_id")
        self.stop_token_id = eot if eot is not None else self.eos_token_id
        self.add_bos = bool(get("tokenizer.ggml.add_bos_token", kind == "llama")) and self.bos_token_id is not None
        self.chat_template = get("tokenizer.chat_template")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if add_special_tokens and self.add_bos:
            ids = [int(self.bos_token_id)] + ids
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """How one token reads on its own (for streaming; multi-byte characters may need the
        next tokens: a streamer decodes the whole answer so far instead)."""
        return self.decode([token_id])

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat prompt: the file's Jinja template over `messages` ([{"role", "content"}]),
        rendered in a sandbox (a template cannot reach Python objects or the file system)."""
        if not self.chat_template:
            raise ValueError(f"{self.source} has no chat template (tokenizer.chat_template)")
        return render_chat_template(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                                    bos_token=self._token(self.bos_token_id), eos_token=self._token(self.eos_token_id))

    def _token(self, token_id) -> str:
        return self.tokens[int(token_id)] if token_id is not None and 0 <= int(token_id) < len(self.tokens) else ""

    def __repr__(self) -> str:
        return f"GGUFTokenizer({self.name}, {len(self.tokens)} tokens, source={self.source!r})"


def render_chat_template(template: str, messages: list[dict], add_generation_prompt: bool = True, **variables) -> str:
    """A Hugging Face-style chat template (Jinja, trim_blocks and lstrip_blocks, as transformers
    renders them) in a sandboxed environment; `raise_exception` is available to templates."""
    try:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError("chat templates need jinja2: pip install jinja2") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                 for m in messages):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                **variables)
    except TemplateError as exc:
        raise ValueError(f"the chat template failed: {exc}") from None
