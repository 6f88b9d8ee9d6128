"""The analytical roofline model: hand-computed counts of a tiny config, the ratios the cache
versions must show, and the cache bytes the real engine reports."""

import numpy as np
import pytest

import celerinfer as ci
from celerinfer.bench import roofline

ONE_B = dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
             intermediate_size=5632, vocab_size=32000, max_position_embeddings=2048)


@pytest.fixture(scope="module")
def flags():
    return {v["name"]: v for v in ci.versions()}


def tiny_config():
    # H=8, L=2, 2 heads of D=4, 1 KV head (KV=4), I=16, V=10, untied
    return ci.ModelConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                          intermediate_size=16, vocab_size=10)


def test_decode_counts_of_a_tiny_config_by_hand(flags):
    """v1, batch 1, 3 cached positions: the new token attends over keys = 4; M = 1 token."""
    cost = roofline.decode_cost(tiny_config(), flags["v1"], 1, 3)
    expected = {
        # gather one row of 8 floats and write it: 2 * 8 * 4 bytes
        "embedding": {"flops": 0, "bytes": 64},
        # per layer: rmsnorm 4*8 + q 2*8*8 + k,v 2*(2*8*4) + rope q 3*8 + rope k 3*4 = 324 flops;
        # bytes: rmsnorm (8 in + 8 w + 8 out)*4 = 96, q (64 w + 8 in + 8 out)*4 = 320,
        # k,v 2*(32 w + 8 in + 4 out)*4 = 352, rope q 2*8*4 = 64, rope k 2*4*4 = 32 -> 864
        "qkv": {"flops": 2 * 324, "bytes": 2 * 864},
        # per layer: 2 query heads * (4*D*keys + 5*keys + D) = 2 * (64 + 20 + 4) = 176 flops;
        # bytes: q in + out (8 + 8)*4 = 64, fp32 K/V read 4 keys * 2 * 4*4 = 128,
        # k,v activations read 2*4*4 = 32, K/V write 1 token * 2 * 4*4 = 32 -> 256
        "attention": {"flops": 2 * 176, "bytes": 2 * 256},
        # per layer: 2*8*8 + residual 8 = 136 flops; (64 w + 8 in + 2*8 residual)*4 = 352 bytes
        "o_proj": {"flops": 2 * 136, "bytes": 2 * 352},
        # per layer: rmsnorm 32 + gate,up 2*(2*8*16) + swiglu 5*16 + down 2*16*8 + residual 8 = 888;
        # bytes: rmsnorm 24*4 = 96, gate,up (256 w + 2*8 in + 2*16 out)*4 = 1216,
        # swiglu 3*16*4 = 192, down (128 w + 16 in + 2*8)*4 = 640 -> 2144
        "mlp": {"flops": 2 * 888, "bytes": 2 * 2144},
        # rmsnorm 4*8 + lm_head 2*8*10 = 192; (8 in + 8 w + 8 out)*4 + (80 w + 8 in + 10 logits)*4 = 488
        "head": {"flops": 192, "bytes": 488},
    }
    assert cost.by_op == expected
    assert cost.flops == 3240
    assert cost.bytes == 7784
    assert cost.arithmetic_intensity == pytest.approx(3240 / 7784)
    assert cost.kv_read_bytes == 2 * 128 and cost.kv_write_bytes == 2 * 32
    # every weight once, except the embedding table of which only the gathered row is read
    cfg = tiny_config()
    assert cost.weight_bytes == 4 * (cfg.num_parameters - 10 * 8 + 8) == 5120


def test_prefill_of_a_tiny_config_by_hand(flags):
    """v1 prefill, batch 2, 3 tokens: M = 6, keys = 3, dense 3x3 scores, head on 2 rows."""
    cost = roofline.prefill_cost(tiny_config(), flags["v1"], 2, 3)
    M, keys = 6, 3
    attention_flops = M * 2 * (4 * 4 * keys + 5 * keys + 4)
    # per layer q and o (8x8), k and v (8x4), gate, up and down (8x16); lm_head on 2 rows
    matmul_flops = 2 * (2 * 2 * M * 8 * 8 + 2 * 2 * M * 8 * 4 + 3 * 2 * M * 8 * 16) + 2 * 2 * 8 * 10
    elementwise = 2 * (4 * M * 8 + 3 * M * 8 + 3 * M * 4 + M * 8 + 4 * M * 8 + 5 * M * 16 + M * 8) + 4 * 2 * 8
    assert cost.flops == attention_flops * 2 + matmul_flops + elementwise
    assert cost.kv_read_bytes == 2 * 2 * keys * 2 * 4 * 4  # layers * rows * keys * K+V * fp32 * D
    assert cost.by_op["head"]["bytes"] == ((2 * 2 * 8 + 8) + (80 + 2 * 8 + 2 * 10)) * 4
    # Engine.forward computes the head on every position
    full = roofline.prefill_cost(tiny_config(), flags["v1"], 2, 3, all_positions=True)
    assert full.by_op["head"]["flops"] == 4 * M * 8 + 2 * M * 8 * 10
    assert {k: v for k, v in full.by_op.items() if k != "head"} == {k: v for k, v in cost.by_op.items() if k != "head"}


def test_flops_and_bytes_are_the_sums_over_ops(flags):
    cost = roofline.decode_cost(ci.ModelConfig(**ONE_B), flags["v2"], 2, 100)
    assert set(cost.by_op) == set(roofline.OPS)
    assert cost.flops == sum(v["flops"] for v in cost.by_op.values())
    assert cost.bytes == sum(v["bytes"] for v in cost.by_op.values())
    assert cost.to_dict()["arithmetic_intensity"] == cost.arithmetic_intensity


@pytest.mark.parametrize("context", [0, 31, 32, 100, 511])
def test_kv_read_ratio_is_the_storage_ratio(flags, context):
    cfg = ci.ModelConfig(**ONE_B)
    D = cfg.head_dim
    v1 = roofline.decode_cost(cfg, flags["v1"], 1, context)
    v2 = roofline.decode_cost(cfg, flags["v2"], 1, context)
    v5 = roofline.decode_cost(cfg, flags["v5"], 1, context)
    assert v2.kv_read_bytes / v1.kv_read_bytes == pytest.approx((D + 4) / (4 * D))
    assert v5.kv_read_bytes / v1.kv_read_bytes == pytest.approx(0.5)
    keys = context + 1
    assert v1.kv_read_bytes == 22 * 4 * keys * 2 * 4 * D
    # KIVI: finished 32-token blocks in int8 (+ per-channel K scales, per-token V scales), the rest fp32
    v6 = roofline.decode_cost(cfg, flags["v6"], 1, context)
    blocks, recent = divmod(keys, 32)
    assert v6.kv_read_bytes == 22 * 4 * (blocks * (32 * D + 4 * D + 32 * (D + 4)) + recent * 8 * D)


def test_cross_layer_sharing(flags):
    cfg = ci.ModelConfig(**ONE_B)
    H, KV, L = cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim, cfg.num_hidden_layers
    for plain, shared in (("v1", "v3"), ("v2", "v4")):
        a = roofline.decode_cost(cfg, flags[plain], 1, 256)
        b = roofline.decode_cost(cfg, flags[shared], 1, 256)
        # half the cache: half the writes and half the distinct KV bytes attention reads from
        assert b.kv_write_bytes * 2 == a.kv_write_bytes
        assert b.kv_resident_bytes * 2 == a.kv_resident_bytes
        # odd layers skip k_proj / v_proj: their weights are never read
        assert a.weight_bytes - b.weight_bytes == (L // 2) * 2 * KV * H * 4
        # every layer's attention still streams its (shared) cache layer
        assert b.kv_read_bytes == a.kv_read_bytes
        assert b.flops < a.flops and b.bytes < a.bytes


def test_decode_is_memory_bound_at_batch_1(flags):
    cost = roofline.decode_cost(ci.ModelConfig(**ONE_B), flags["v1"], 1, 512)
    assert cost.arithmetic_intensity < 1.0
    # about 2 flops per weight, 4 bytes per weight: AI close to 0.5
    assert 0.4 < cost.arithmetic_intensity < 0.6


def test_prefill_intensity_grows_with_prompt_length(flags):
    cfg = ci.ModelConfig(**ONE_B)
    ai = [roofline.prefill_cost(cfg, flags["v1"], 1, P).arithmetic_intensity for P in (1, 2, 8, 64, 512, 2048)]
    assert all(b > a for a, b in zip(ai, ai[1:]))
    assert ai[-2] > 50  # a 512-token prefill is compute-bound on any CPU


@pytest.mark.parametrize("context", [0, 5, 40])
def test_v0_decode_is_a_prefill_of_the_whole_sequence(flags, context):
    cfg = tiny_config()
    for B in (1, 3):
        step = roofline.decode_cost(cfg, flags["v0"], B, context)
        assert step.to_dict() == roofline.prefill_cost(cfg, flags["v0"], B, context + 1).to_dict()
        # the head only on each row's last position
        assert step.by_op["head"]["flops"] == B * (4 * 8 + 2 * 8 * 10)
        # the same work as an fp32-cache prefill (v0's K/V go through one fp32 scratch layer)
        v1 = roofline.prefill_cost(cfg, flags["v1"], B, context + 1)
        assert (step.by_op, step.kv_read_bytes, step.kv_write_bytes) == (v1.by_op, v1.kv_read_bytes, v1.kv_write_bytes)
    assert roofline.decode_cost(cfg, flags["v0"], 1, 40).flops > 10 * roofline.decode_cost(cfg, flags["v1"], 1, 40).flops


def test_version_by_name_and_config_as_dict(flags):
    cfg = ci.ModelConfig(**ONE_B)
    as_dict = {**ONE_B, "architecture": "llama"}
    assert roofline.decode_cost(as_dict, "v4", 2, 17).to_dict() == roofline.decode_cost(cfg, flags["v4"], 2, 17).to_dict()
    with pytest.raises(ValueError, match="unknown version"):
        roofline.decode_cost(cfg, "v99", 1, 1)
    with pytest.raises(ValueError):
        roofline.decode_cost(cfg, "v1", 0, 1)
    with pytest.raises(ValueError):
        roofline.decode_cost(cfg, "v1", 1, -1)


def test_mean_cost(flags):
    cfg = tiny_config()
    steps = [roofline.decode_cost(cfg, flags["v1"], 1, c) for c in (3, 4, 5)]
    mean = roofline.mean_cost(steps)
    assert mean.flops == pytest.approx(steps[1].flops)  # linear in the context length
    assert mean.bytes == pytest.approx(steps[1].bytes)
    assert mean.kv_read_bytes == pytest.approx(steps[1].kv_read_bytes)
    with pytest.raises(ValueError):
        roofline.mean_cost([])


def test_achieved():
    cost = roofline.Cost()
    cost.add("mlp", 2e9, 1e9)  # AI = 2 flop/byte
    out = roofline.achieved(cost, 0.5, peak_gflops=100.0, peak_gbps=10.0)
    assert out["achieved_gflops"] == pytest.approx(4.0)
    assert out["achieved_gbps"] == pytest.approx(2.0)
    assert out["arithmetic_intensity"] == pytest.approx(2.0)
    assert out["ridge_point"] == pytest.approx(10.0)
    assert out["bound"] == "memory"
    assert out["attainable_gflops"] == pytest.approx(20.0)
    assert out["fraction_of_peak_flops"] == pytest.approx(0.04)
    assert out["fraction_of_bandwidth"] == pytest.approx(0.2)
    assert out["peak_gflops"] == 100.0 and out["peak_gbps"] == 10.0
    hot = roofline.Cost()
    hot.add("mlp", 1e12, 1e9)  # AI = 1000
    out = roofline.achieved(hot, 20.0, 100.0, 10.0)
    assert out["bound"] == "compute" and out["attainable_gflops"] == 100.0
    with pytest.raises(ValueError):
        roofline.achieved(cost, 0.0, 100.0, 10.0)
    # numpy inputs give plain Python numbers (the results are stored as JSON)
    out = roofline.achieved(cost, np.float64(0.5), np.float64(100.0), np.float32(10.0))
    assert all(type(v) in (float, str) for v in out.values())


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11"])
def test_cache_bytes_match_the_engine(flags, version):
    """The model's storage bytes are the engine's: kv_cache_bytes after a generation (v9/v10
    scaled to evict in this short run; v11 merging every pair, as the model counts it)."""
    setting = {"v7": {"base": "v7", "residual": 32}, "v8": {"base": "v8", "residual": 32},
               "v9": {"base": "v9", "sinks": 2, "window": 20}, "v10": {"base": "v10", "window": 10, "heavy": 10},
               "v11": {"base": "v11", "merge_angle": 3.14159}}.get(version)
    if setting is not None:
        flags = {**flags, version: setting}
    cfg = ci.ModelConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=64, max_position_embeddings=128)
    model = ci.random_model(cfg, seed=3)
    P, T, B = 37, 9, 2  # crosses a KIVI block boundary, leaves an unfinished block
    ids = np.random.default_rng(0).integers(0, 64, size=(B, P))
    gen = ci.Engine(model, flags[version]).generate(ids, max_new_tokens=T, timing=False)
    cached = P + T - 1  # the last sampled token is never fed back
    assert gen.kv_cache_bytes == roofline.kv_cache_bytes(cfg, flags[version], B, cached)
    # the attention of the last decode step reads all of it (sharing: every layer reads its pair's)
    step = roofline.decode_cost(cfg, flags[version], B, cached - 1)
    assert step.kv_resident_bytes == gen.kv_cache_bytes
    assert roofline.kv_cache_bytes(cfg, flags["v0"], B, cached) == 0


def test_an_evicting_cache_bounds_the_decode_step():
    """StreamingLLM (v9) and H2O (v10) hold 512 tokens: past the budget a decode step's attention
    work and KV reads stop growing, while v1's keep growing with the context."""
    cfg = ci.ModelConfig(**ONE_B)
    for version in ("v9", "v10"):
        at_1k, at_2k = (roofline.decode_cost(cfg, version, 1, n) for n in (1000, 2000))
        assert at_1k.by_op["attention"]["flops"] == at_2k.by_op["attention"]["flops"]
        assert at_1k.kv_read_bytes == at_2k.kv_read_bytes
    v1_1k, v1_2k = (roofline.decode_cost(cfg, "v1", 1, n) for n in (1000, 2000))
    assert v1_2k.kv_read_bytes > 1.9 * v1_1k.kv_read_bytes
