"""Files in and out: .npy arrays, model files (seed JSON, safetensors, Hugging Face folders,
PyTorch checkpoints), GGUF export, tokenizers, and atomic whole-file writes.

Import the module that defines what you need (``celerinfer.io.npy``, ``celerinfer.io.gguf``,
...); the everyday names are also on the top-level package (``celerinfer.load``, ...).
"""
