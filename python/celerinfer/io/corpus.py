"""Natural English text for quality measurements, from what an installed package ships: never
stored in this repository.

``licenses`` (the default): the licence texts of Debian's ``base-files`` package in
/usr/share/common-licenses (GPL, LGPL, GFDL, Apache-2.0, Artistic, MPL, BSD, CC0): about
250 KB of edited legal English, installed on every Debian and Ubuntu system (base-files is an
essential package: it cannot be removed), identical on every machine of a release, and
licensed for redistribution. Legal prose is not a web corpus: perplexities are lower than on
WikiText, and a method's *relative* cost (KL, the NLL difference from the fp32 cache) is what
the measurements compare. Any UTF-8 text file works as well (``--corpus FILE``).
"""

from __future__ import annotations

import os
from pathlib import Path

LICENSES_DIR = Path("/usr/share/common-licenses")
CORPORA = {"licenses": "the licence texts of Debian's base-files package (/usr/share/common-licenses)"}


def _licenses(folder: Path = LICENSES_DIR) -> str:
    if not folder.is_dir():
        raise FileNotFoundError(f"the 'licenses' corpus is the licence texts Debian's base-files package installs in "
                                f"{folder}, which this system lacks; pass a text file instead (--corpus FILE)")
    seen, texts = set(), []
    for path in sorted(folder.iterdir()):
        real = os.path.realpath(path)  # GPL -> GPL-3 and the like: each text once
        if path.is_file() and real not in seen:
            seen.add(real)
            texts.append(Path(real).read_text(encoding="utf-8", errors="replace").strip())
    if not texts:
        raise FileNotFoundError(f"{folder} holds no licence texts")
    return "\n\n".join(texts)


def corpus_text(corpus: str) -> tuple[str, str]:
    """(text, description) of a corpus name (:data:`CORPORA`) or a UTF-8 text file's path."""
    if corpus in CORPORA:
        return _licenses(), f"{corpus}: {CORPORA[corpus]}"
    path = Path(corpus)
    if not path.is_file():
        raise FileNotFoundError(f"no corpus {corpus!r}: a name ({', '.join(CORPORA)}) or a text file")
    return path.read_text(encoding="utf-8", errors="replace"), str(path)
