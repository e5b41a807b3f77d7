"""Checks that transformers loads the model part of a spin checkpoint and computes the same logits.

Run (torch 2.5.1 / transformers 4.46.3; not in CI, which has no torch):
    SPIN_CKPT_HF_OUT=/tmp/ckpt_hf build/bin/test_checkpoint
    python3 tests/ref/check_checkpoint_hf.py /tmp/ckpt_hf

test_checkpoint leaves DIR/checkpoint-1 (spin_ckpt_save of a random tiny llama) and
DIR/spin_logits.safetensors (ids [2, 6] as f32, spin's logits [12, vocab]). This script checks:
  * AutoModelForCausalLM.from_pretrained(DIR/checkpoint-1) reports no missing, unexpected or
    mismatched keys, and every parameter equals the stored tensor bit for bit;
  * GenerationConfig loads; optimizer.safetensors and trainer_state.json are readable by the
    safetensors and json libraries;
  * transformers' logits (eager attention, f32) match spin's: ||a - b|| / ||b|| <= 1e-5, the
    tolerance of tests/unit/test_llama.c for the same f32 forward (different summation order).
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GenerationConfig

TOL = 1e-5


def main(out):
    ckpt = os.path.join(out, "checkpoint-1")
    model, info = AutoModelForCausalLM.from_pretrained(
        ckpt, torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    model.eval()
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info[k], f"{k}: {info[k]}"
    stored = load_file(os.path.join(ckpt, "model.safetensors"))
    params = dict(model.named_parameters())
    assert set(stored) == set(params), sorted(set(stored) ^ set(params))
    for name, t in stored.items():
        assert torch.equal(params[name].detach(), t), name
    GenerationConfig.from_pretrained(ckpt)
    state = load_file(os.path.join(ckpt, "optimizer.safetensors"))
    with open(os.path.join(ckpt, "trainer_state.json")) as f:
        trainer_state = json.load(f)
    ref = load_file(os.path.join(out, "spin_logits.safetensors"))
    ids = ref["ids"].to(torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.reshape(-1, model.config.vocab_size)
    err = (torch.linalg.norm(ref["logits"].double() - logits.double()) / torch.linalg.norm(logits.double())).item()
    print(
        f"{type(model).__name__}: {len(stored)} tensors bit-identical, {len(state)} state tensors, "
        f"trainer_state keys {sorted(trainer_state)}; logits normalised error {err:.2e} (tol {TOL})"
    )
    assert err <= TOL, err


if __name__ == "__main__":
    main(sys.argv[1])
