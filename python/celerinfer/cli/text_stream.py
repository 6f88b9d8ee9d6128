"""Printing a generation's text as its tokens come (`run --chat`)."""

from __future__ import annotations

import sys


class TextStream:
    """An Engine.generate on_token callback that prints row 0's text as it grows. The whole
    answer is decoded each time and only the new part printed, so characters that span tokens
    come out whole: while the text ends in an incomplete character (U+FFFD), it waits for the
    next token. The stop token (end of turn) is not shown."""

    def __init__(self, tokenizer, stop_token_id: int | None, out=None):
        self.tokenizer = tokenizer
        self.stop_token_id = stop_token_id
        self.out = out if out is not None else sys.stdout
        self.ids: list[int] = []
        self.shown = 0
        self.stopped = False

    def __call__(self, next_ids) -> None:
        token = int(next_ids[0])
        if self.stopped or token == self.stop_token_id:
            self.stopped = True
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        self._write(text[self.shown:])
        self.shown = len(text)

    def finish(self) -> str:
        """Prints what is left (an incomplete character as it is) and a newline; the answer."""
        text = self.tokenizer.decode(self.ids)
        self._write(text[self.shown:] + "\n")
        self.shown = len(text)
        return text

    def _write(self, text: str) -> None:
        encoding = getattr(self.out, "encoding", None) or "utf-8"
        self.out.write(text.encode(encoding, errors="replace").decode(encoding, errors="replace"))
        self.out.flush()
