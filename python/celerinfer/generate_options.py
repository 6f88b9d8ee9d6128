"""GenerateOptions: how :meth:`celerinfer.Engine.generate` generates, as one object (the C++
side takes one too, ``_core.GenerateOptions``).

The fields are checked when the object is made, so a bad value fails where it is written, with
a ValueError naming the field, not later inside the engine. What needs the model (an
eos_token_id beyond the vocabulary, a prompt plus new tokens beyond max_seq_len) is checked by
the engine when it generates.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields

from . import _core
from .arguments import integer as _integer
from .arguments import real as _real

#: the seed is a 64-bit unsigned integer in the engine
SEED_LIMIT = 2**64


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate and how to sample.

    max_new_tokens: tokens to generate (>= 1). temperature: 0 is greedy (argmax, ties to the
    lowest id), else >= 0. top_k: keep the k most likely tokens (0: off). top_p: nucleus
    threshold in (0, 1] (1: off). repetition_penalty: > 0 (1: off). seed: the sampling seed
    (0 <= seed < 2**64), one stream per row. eos_token_id: a row that emits it keeps emitting
    it; None: no end token. return_logits: keep the raw logits of every step. timing: run the
    per-phase clocks.
    """

    max_new_tokens: int
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    eos_token_id: int | None = None
    return_logits: bool = False
    timing: bool = True

    def __post_init__(self):
        checked = {
            "max_new_tokens": _integer("max_new_tokens", self.max_new_tokens, 1),
            "temperature": _real("temperature", self.temperature),
            "top_k": _integer("top_k", self.top_k, 0),
            "top_p": _real("top_p", self.top_p),
            "repetition_penalty": _real("repetition_penalty", self.repetition_penalty),
            "seed": _integer("seed", self.seed, 0, SEED_LIMIT),
            "eos_token_id": None if self.eos_token_id is None else _integer("eos_token_id", self.eos_token_id, 0),
            "return_logits": bool(self.return_logits),
            "timing": bool(self.timing),
        }
        if checked["temperature"] < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {checked['temperature']}")
        if not 0 < checked["top_p"] <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {checked['top_p']}")
        if checked["repetition_penalty"] <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {checked['repetition_penalty']}")
        for name, value in checked.items():  # plain Python values (numpy ints become int)
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, options=None, fields_given: dict | None = None) -> GenerateOptions:
        """The options of one :meth:`Engine.generate` call: a GenerateOptions, or the keyword
        fields, or an int (the short form ``generate(ids, 8)``: max_new_tokens) with the other
        fields as keywords. An options object together with fields is a TypeError."""
        fields_given = fields_given or {}
        if isinstance(options, GenerateOptions):
            if fields_given:
                raise TypeError(f"pass either a GenerateOptions or its fields as keywords, not both "
                                f"(got both, and {', '.join(sorted(fields_given))})")
            return options
        if options is None:
            return cls(**fields_given)
        if isinstance(options, numbers.Integral) and not isinstance(options, bool):
            if "max_new_tokens" in fields_given:
                raise TypeError("max_new_tokens given twice (as the second argument and as a keyword)")
            return cls(max_new_tokens=options, **fields_given)
        raise TypeError(f"options must be a GenerateOptions (or max_new_tokens as an int), "
                        f"got {type(options).__name__}")

    def to_core(self) -> _core.GenerateOptions:
        """The C++ engine's GenerateOptions (eos_token_id None is -1 there)."""
        core = _core.GenerateOptions()
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(core, f.name, -1 if f.name == "eos_token_id" and value is None else value)
        return core
