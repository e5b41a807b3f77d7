#!/usr/bin/env python3
"""Golden data for tests/unit/test_llama.c.

Builds tiny random Llama/Mistral models with transformers (eager attention, float32), saves each
with save_pretrained(safe_serialization=True) into tests/data/llama/<variant>/, and writes
golden.safetensors beside it with, for one fixed batch (B=2, T=12):

  input_ids   i32 [B, T]    the token ids
  labels      i32 [B, T]    labels with -100 at some positions
  logits      f32 [B, T, V] model(input_ids).logits
  loss        f32 [1]       transformers' loss (logits[:, :-1] vs labels[:, 1:], mean over non -100)
  grad.<name> f32           d loss / d parameter, for every parameter (HF names)

Dimensions are smaller than a real model so the four variants stay under ~1 MB in total.
Run from the repository root:  python3 tests/ref/make_llama_golden.py
Needs torch, transformers and safetensors from PyPI (tested with torch 2.5.1, transformers 4.46.3).
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "llama")
B, T, V = 2, 12, 97

COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=V,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    attn_implementation="eager",
    torch_dtype="float32",
)

VARIANTS = {
    # grouped-query attention (4 query heads share 2 kv heads), separate lm_head
    "llama_gqa": (LlamaConfig, LlamaForCausalLM, dict(rope_theta=10000.0, tie_word_embeddings=False)),
    # tied input/output embeddings, plain multi-head attention, eos as a list
    "llama_tied": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(num_key_value_heads=4, rope_theta=100000.0, tie_word_embeddings=True, eos_token_id=[2, 3]),
    ),
    # Mistral with a sliding window (5) smaller than the sequence (12)
    "mistral_window": (
        MistralConfig,
        MistralForCausalLM,
        dict(rope_theta=10000.0, sliding_window=5, tie_word_embeddings=False),
    ),
    # Llama 3 frequency scaling; head_dim 16 != hidden / heads
    "llama3_rope": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(
            head_dim=16,
            rope_theta=500000.0,
            tie_word_embeddings=False,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
    ),
}


def batch():
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, V, (B, T), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100  # e.g. a prompt that is not scored
    labels[1, 5] = -100
    labels[1, 9:] = -100
    return ids, labels


def make(name, cfg_cls, model_cls, extra):
    torch.manual_seed(sum(map(ord, name)))
    kw = dict(COMMON)
    kw.update(extra)
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).float()
    # spread the norm weights away from 1 so their gradients and scaling are exercised
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
    model.generation_config.do_sample = True
    model.generation_config.temperature = 0.7
    model.generation_config.top_p = 0.9
    model.generation_config.top_k = 20
    model.generation_config.max_new_tokens = 64
    model.train()
    d = os.path.join(OUT, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True)

    ids, labels = batch()
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    golden = {
        "input_ids": ids.to(torch.int32).contiguous(),
        "labels": labels.to(torch.int32).contiguous(),
        "logits": out.logits.detach().float().contiguous(),
        "loss": out.loss.detach().float().reshape(1).contiguous(),
    }
    for n, p in model.named_parameters():
        golden["grad." + n] = p.grad.detach().float().contiguous()
    save_file(golden, os.path.join(d, "golden.safetensors"), metadata={"format": "pt"})
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: loss {out.loss.item():.6f}, {len(golden) - 4} gradients, {size} bytes")


def main():
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    os.makedirs(OUT, exist_ok=True)
    for name, (cfg_cls, model_cls, extra) in VARIANTS.items():
        make(name, cfg_cls, model_cls, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
