"""Type stub for the C++ extension celerinfer._core."""

import numpy as np
import numpy.typing as npt

class FormatError(ValueError): ...

class ModelConfig:
    def __init__(
        self,
        *,
        architecture: str = "llama",
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 8,
        num_key_value_heads: int | None = None,
        vocab_size: int = 128,
        max_position_embeddings: int = 128,
        intermediate_size: int = 0,
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 1e6,
        tie_word_embeddings: bool = False,
    ) -> None: ...
    architecture: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    @property
    def head_dim(self) -> int: ...
    @property
    def num_parameters(self) -> int: ...

class Model:
    @property
    def config(self) -> ModelConfig: ...
    @property
    def input_ids(self) -> npt.NDArray[np.integer] | None: ...
    @property
    def attention_mask(self) -> npt.NDArray[np.integer] | None: ...
    @property
    def rope(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None: ...
    def set_inputs(self, input_ids: np.ndarray | None, attention_mask: np.ndarray | None = None) -> None: ...
    def state_dict(self) -> dict[str, npt.NDArray[np.float32]]: ...
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> npt.NDArray[np.float32]: ...
    def save_seed_json(self, path: str) -> None: ...
    def save_safetensors(self, path: str) -> None: ...

def random_model(config: ModelConfig, seed: int = 0) -> Model: ...
def load_seed_json(path: str) -> Model: ...
def load_safetensors(path: str) -> Model: ...
def random_tokens(batch: int, seq_len: int, vocab_size: int, seed: int = 0) -> npt.NDArray[np.int32]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def save_npy(path: str, array: np.ndarray) -> None: ...
def load_npy(path: str) -> np.ndarray: ...

built_with_cuda: bool

def sample(
    logits: np.ndarray,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int = 0,
    history: np.ndarray | None = None,
    num_draws: int = 1,
) -> npt.NDArray[np.int64]: ...
def sampling_distribution(
    logits: np.ndarray,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    history: np.ndarray | None = None,
) -> npt.NDArray[np.float64]: ...
def versions() -> list[dict]: ...
def phase_names() -> list[str]: ...
def peak_rss_bytes() -> int: ...

class GenerationResult:
    @property
    def tokens(self) -> npt.NDArray[np.int64]: ...
    @property
    def logits(self) -> npt.NDArray[np.float32] | None: ...
    @property
    def steps(self) -> npt.NDArray[np.int64]: ...
    prompt_length: int
    new_tokens: int
    kv_cache_bytes: int
    kv_cache_capacity_bytes: int
    peak_bytes: int

class Engine:
    def __init__(self, model: Model, version: str = "v1", max_seq_len: int = 0) -> None: ...
    @property
    def version(self) -> dict: ...
    @property
    def max_seq_len(self) -> int: ...
    def generate(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None,
        max_new_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        repetition_penalty: float,
        seed: int,
        eos_token_id: int,
        return_logits: bool,
        timing: bool,
    ) -> GenerationResult: ...
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> npt.NDArray[np.float32]: ...
    def score(
        self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None, prefill_length: int = 1
    ) -> npt.NDArray[np.float32]: ...

def stream_triad(n_floats: int = ..., reps: int = 10) -> list[float]: ...
def matmul_gflops(M: int, N: int, K: int, reps: int = 10) -> list[float]: ...
