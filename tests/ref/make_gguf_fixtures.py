#!/usr/bin/env python3
"""Writes the GGUF fixtures of tests/unit/test_gguf.c into tests/data/gguf/ with the `gguf`
package from PyPI (the one llama.cpp maintains), and their expected f32 values as raw
little-endian float32 files produced by the package's own dequantisation
(gguf.quants.dequantize).

    pip install gguf numpy
    python3 tests/ref/make_gguf_fixtures.py            # (re)writes tests/data/gguf/
    python3 tests/ref/make_gguf_fixtures.py --verify FILE
        # checks a file written by our writer (test_gguf leaves gguf_roundtrip.gguf in its
        # working directory) with gguf's reader: the metadata and tensors test_gguf wrote.

Fixtures (all seeded, so re-running reproduces them byte for byte):
  types.gguf          every metadata value type (nested arrays too) and one tensor per supported
                      type (F32, F16, BF16, Q8_0, Q4_0, Q4_1), quantised by gguf.quants.quantize
  types.<name>.f32    the expected values of each tensor (row-major, numpy order)
  align64_v2.gguf     general.alignment = 64 and the version field patched to 2
  align64_v2.<name>.f32
  tiny_llama.gguf     llama.* and tokenizer.ggml.* metadata, and attn_q / attn_k weights permuted
                      as convert_hf_to_gguf.py does
  tiny_llama.<name>.hf.f32  the un-permuted (Hugging Face order) q_proj / k_proj weights
"""
import argparse
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "gguf")


def save_f32(path, a):
    np.ascontiguousarray(a, dtype="<f4").tofile(path)


def add_quant(w, name, data, qtype, expected_prefix):
    """Quantises data (f32, row-major) to qtype, adds it, and writes the expected f32 values."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == QT.F32:
        w.add_tensor(name, data)
        expected = data
    elif qtype == QT.F16:
        h = data.astype(np.float16)
        w.add_tensor(name, h)
        expected = h.astype(np.float32)
    else:
        q = gguf.quants.quantize(data, qtype)
        w.add_tensor(name, q, raw_dtype=qtype)
        expected = gguf.quants.dequantize(q, qtype)
    assert expected.shape == data.shape, (name, expected.shape, data.shape)
    save_f32(f"{expected_prefix}.{name}.f32", expected)


# convert_hf_to_gguf.py, LlamaModel.permute
def permute(weights, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def make_types(rng):
    path = os.path.join(OUT, "types.gguf")
    w = gguf.GGUFWriter(path, "testarch")
    kv = w.add_key_value
    kv("test.u8", 200, VT.UINT8)
    kv("test.i8", -100, VT.INT8)
    kv("test.u16", 60000, VT.UINT16)
    kv("test.i16", -30000, VT.INT16)
    kv("test.u32", 4000000000, VT.UINT32)
    kv("test.i32", -2000000000, VT.INT32)
    kv("test.f32", 3.25, VT.FLOAT32)
    kv("test.bool", True, VT.BOOL)
    kv("test.string", "h\u00e9llo w\u00f6rld \u2713", VT.STRING)
    kv("test.u64", 2**63 + 5, VT.UINT64)
    kv("test.i64", -(2**62) - 3, VT.INT64)
    kv("test.f64", 1.0 / 3.0, VT.FLOAT64)
    kv("test.small_u32", 7, VT.UINT32)
    kv("test.arr_i32", [1, -2, 300000], VT.ARRAY, VT.INT32)
    kv("test.arr_u8", [0, 255, 7], VT.ARRAY, VT.UINT8)
    kv("test.arr_i16", [-5, 5], VT.ARRAY, VT.INT16)
    kv("test.arr_u64", [2**40, 1], VT.ARRAY, VT.UINT64)
    kv("test.arr_f32", [0.5, -1.25, 1e-3], VT.ARRAY, VT.FLOAT32)
    kv("test.arr_f64", [0.1, -2.5], VT.ARRAY, VT.FLOAT64)
    kv("test.arr_bool", [True, False, True], VT.ARRAY, VT.BOOL)
    kv("test.arr_str", ["a", "", "\u00fcn\u00ef"], VT.ARRAY, VT.STRING)
    kv("test.arr_nested", [[1, 2], [3]], VT.ARRAY, VT.ARRAY)  # inner arrays of int32
    kv("test.arr_nested_str", [["x", "yz"], ["w"]], VT.ARRAY, VT.ARRAY)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    t = {}
    t["t_f32"] = (rng.standard_normal((3, 5, 7)).astype(np.float32), QT.F32)
    t["t_f16"] = (rng.standard_normal((4, 6)).astype(np.float32), QT.F16)
    t["t_bf16"] = (rng.standard_normal((2, 8)).astype(np.float32) * 10, QT.BF16)
    q8 = rng.standard_normal((4, 64)).astype(np.float32)
    q8[1, :32] = 0  # an all-zero block
    q8[2, 32:] *= 1e-3  # a small scale
    t["t_q8_0"] = (q8, QT.Q8_0)
    q40 = rng.standard_normal((3, 96)).astype(np.float32)
    q40[0, 32:64] = 0
    q40[2, :32] = np.abs(q40[2, :32])  # one-signed block
    t["t_q4_0"] = (q40, QT.Q4_0)
    q41 = (rng.standard_normal((5, 64)) * 3 + 1).astype(np.float32)
    q41[4, :32] = 2.0  # a constant block (d = 0)
    t["t_q4_1"] = (q41, QT.Q4_1)
    t["t_q4_1_1d"] = (rng.standard_normal((64,)).astype(np.float32), QT.Q4_1)
    for name, (data, qt) in t.items():
        add_quant(w, name, data, qt, os.path.join(OUT, "types"))
    write(w)


def make_align64_v2(rng):
    path = os.path.join(OUT, "align64_v2.gguf")
    w = gguf.GGUFWriter(path, "testarch")
    w.add_custom_alignment(64)
    add_quant(w, "a", rng.standard_normal((3,)).astype(np.float32), QT.F32, os.path.join(OUT, "align64_v2"))
    add_quant(w, "b", rng.standard_normal((2, 5)).astype(np.float32), QT.F16, os.path.join(OUT, "align64_v2"))
    write(w)
    with open(path, "r+b") as f:  # v2 and v3 share the layout (v3 added big-endian files)
        f.seek(4)
        f.write((2).to_bytes(4, "little"))


def make_tiny_llama(rng):
    path = os.path.join(OUT, "tiny_llama.gguf")
    n_embd, n_head, n_head_kv, n_ff, vocab = 64, 4, 2, 96, 10
    hd = n_embd // n_head
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny llama fixture")
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(100000.0)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(vocab)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(2.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    tokens = ["<unk>", "<s>", "</s>", "a", "b", "ab", "\u0120a", "\u0120", "\u00e9", "ab\u0120"]
    w.add_token_list(tokens)
    w.add_token_scores([float(-i) for i in range(vocab)])
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    w.add_token_merges(["a b", "\u0120 a"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")

    prefix = os.path.join(OUT, "tiny_llama")
    q_hf = rng.standard_normal((n_head * hd, n_embd)).astype(np.float32)
    k_hf = rng.standard_normal((n_head_kv * hd, n_embd)).astype(np.float32)
    save_f32(f"{prefix}.blk.0.attn_q.weight.hf.f32", q_hf)
    save_f32(f"{prefix}.blk.0.attn_k.weight.hf.f32", k_hf)
    add_quant(w, "token_embd.weight", rng.standard_normal((vocab, n_embd)), QT.F32, prefix)
    add_quant(w, "blk.0.attn_norm.weight", rng.standard_normal((n_embd,)), QT.F32, prefix)
    add_quant(w, "blk.0.attn_q.weight", permute(q_hf, n_head, n_head), QT.F32, prefix)
    add_quant(w, "blk.0.attn_k.weight", permute(k_hf, n_head, n_head_kv), QT.F32, prefix)
    add_quant(w, "blk.0.attn_v.weight", rng.standard_normal((n_head_kv * hd, n_embd)), QT.Q8_0, prefix)
    add_quant(w, "output_norm.weight", rng.standard_normal((n_embd,)), QT.F32, prefix)
    write(w)


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def verify(path):
    """Checks the file test_gguf's round-trip test writes (keep in sync with test_gguf.c)."""
    r = gguf.GGUFReader(path)
    f = r.fields

    def scalar(key):
        fl = f[key]
        return fl.parts[fl.data[0]][0]

    def string(key):
        fl = f[key]
        return bytes(fl.parts[fl.data[0]]).decode()

    assert string("general.architecture") == "llama"
    assert scalar("rt.u32") == 123456
    assert scalar("rt.i32") == -7
    assert scalar("rt.bool") == 1
    assert abs(scalar("rt.f32") - 0.125) == 0
    assert string("rt.string") == "round trip \u2713"
    strs = [bytes(f["rt.arr_str"].parts[i]).decode() for i in f["rt.arr_str"].data]
    assert strs == ["x", "", "yz"], strs
    tensors = {t.name: t for t in r.tensors}
    a = np.arange(2 * 3 * 32, dtype=np.float32).reshape(2, 3, 32) / 7
    got = np.asarray(tensors["w_f32"].data).reshape(2, 3, 32)
    assert np.array_equal(got, a), "w_f32 differs"
    got16 = np.asarray(tensors["w_f16"].data).reshape(2, 3, 32)
    assert got16.dtype == np.float16 and np.array_equal(got16, a.astype(np.float16)), "w_f16 differs"
    assert list(tensors["w_f32"].shape) == [32, 3, 2]  # ggml order
    print(f"{path}: OK ({len(r.tensors)} tensors, {len(f)} fields, alignment {r.alignment})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", metavar="FILE")
    args = ap.parse_args()
    if args.verify:
        verify(args.verify)
        return
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20241122)
    make_types(rng)
    make_align64_v2(rng)
    make_tiny_llama(rng)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    sys.exit(main())
