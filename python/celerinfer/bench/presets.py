"""Model presets for the benchmarks: Llama-architecture random models from MiniMind-sized to
~1B, GPT-2's four sizes (seed 002's presets), and a `tiny` one whose whole benchmark suite runs
in seconds. A preset may also scale the benchmark settings down (`bench`), which explicit
config keys and CLI flags still override."""

from ..model_presets import MODEL_PRESETS

PRESETS = {
    "tiny": {
        "description": "the whole suite in seconds (tests, demos)",
        "model": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      vocab_size=256, max_position_embeddings=1024),
        "bench": dict(prompt_length=8, T_values=[8, 16, 32], T_star=16, num_warmup_runs=1, num_measure_runs=3,
                      perplexity=dict(sequence_length=48, num_sequences=2),
                      roofline=dict(prompt_length=32, decode_tokens=8)),
    },
    "minimind": {
        "description": "MiniMind2-Small shape (512 hidden, 8 layers, GQA 8/2, vocab 6400)",
        "model": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                      vocab_size=6400, max_position_embeddings=1024),
        "bench": {},
    },
    "minimind-base": {
        "description": "MiniMind2 shape (768 hidden, 16 layers, GQA 8/2, vocab 6400)",
        "model": dict(hidden_size=768, num_hidden_layers=16, num_attention_heads=8, num_key_value_heads=2,
                      vocab_size=6400, max_position_embeddings=1024),
        "bench": {},
    },
    "small": {
        "description": "GPT-2-small-sized Llama (768 hidden, 12 layers, 12 heads, vocab 32000)",
        "model": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12,
                      vocab_size=32000, max_position_embeddings=2048),
        "bench": {},
    },
    "1b": {
        "description": "TinyLlama-1.1B shape (2048 hidden, 22 layers, GQA 32/4, ffn 5632, vocab 32000)",
        "model": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                      intermediate_size=5632, vocab_size=32000, max_position_embeddings=2048, rope_theta=10000.0),
        "bench": dict(T_values=[16, 32, 64], T_star=32, versions=["v1", "v2", "v3", "v4"],
                      perplexity=dict(sequence_length=64, num_sequences=1)),
    },
}
# GPT-2 sizes (architecture gpt2: learned positions, LayerNorm, GELU, tied head); the larger
# ones measure fewer T values by default.
for _name, _light in (("gpt2", False), ("gpt2-medium", False), ("gpt2-large", True), ("gpt2-xl", True)):
    PRESETS[_name] = {
        "description": f"GPT-2 {_name.partition('-')[2] or 'small'} shape (architecture gpt2)",
        "model": dict(MODEL_PRESETS[_name]),
        "bench": dict(T_values=[16, 32, 64], T_star=32) if _light else {},
    }
