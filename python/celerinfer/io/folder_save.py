"""Saving a Hugging Face checkpoint folder over whatever the folder holds, all or nothing.

The new checkpoint (config.json, model.safetensors) is written completely into a temporary
folder inside the target first; only then are the old checkpoint's files replaced (renames in
one file system) and the ones the new checkpoint does not have (a sharded index and the shards
it names, other weight files) removed, so that a loader cannot mix old and new. A failure
before that point leaves the folder as it was. Other files (a tokenizer, a README) stay."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

INDEX = "model.safetensors.index.json"
#: weight files a loader would read beside or instead of model.safetensors
WEIGHT_PATTERNS = ("model-*-of-*.safetensors", "pytorch_model*.bin", "pytorch_model.bin.index.json", INDEX)


def _old_checkpoint_files(folder: Path) -> set[Path]:
    """The files of a checkpoint already in `folder` that the new one must replace or remove:
    the index, every shard it names (inside the folder), and the usual weight file names."""
    found = {p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    index = folder / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            names = set(weight_map.values()) if isinstance(weight_map, dict) else set()
        except (ValueError, OSError, AttributeError, RecursionError, TypeError):
            names = set()  # a damaged index: it goes, its shards are found by name above
        for name in names:
            shard = (folder / str(name)).resolve()
            if shard.parent == folder.resolve() and shard.is_file():
                found.add(folder / shard.name)
    return found


def save_folder(write: Callable[[str], None], folder: str | os.PathLike) -> list[Path]:
    """Calls write(temporary folder) to write a checkpoint, then moves it into `folder`. Returns
    the files of the folder's earlier checkpoint that were replaced or removed (sorted)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".celerinfer-save-", dir=folder))
    try:
        write(str(staging))
        new_files = sorted(p for p in staging.iterdir() if p.is_file())
        old = _old_checkpoint_files(folder)
        replaced = {folder / p.name for p in new_files if (folder / p.name).exists()} | old
        for p in new_files:
            os.replace(p, folder / p.name)
        for p in old - {folder / q.name for q in new_files}:
            p.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(replaced)
