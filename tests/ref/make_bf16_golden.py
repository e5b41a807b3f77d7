#!/usr/bin/env python3
"""Golden 10-step bf16 SPIN trajectory of the tiny Llama (torch + transformers), for
tests/unit/test_bf16.c.

The setup of make_train_golden.py (its token rows, its tiny model, uclaml/SPIN's sigmoid loss with
beta 0.1 against a frozen copy of the initial model, RMSProp at lr 1e-3 under the linear schedule
with 3 warmup steps, clip_grad_norm_(1.0), examples in order), trained in mixed precision as
DeepSpeed's bf16 mode runs it: the model and the reference are bf16 (model.to(torch.bfloat16):
bf16 weights and activations, torch's f32 accumulation inside each op, transformers' f32 RMSNorm
statistics and logits.float()); the optimizer updates f32 master copies of the weights from the
gradients converted to f32, and each update is rounded back into the bf16 model.

Writes tests/data/train/trajectory_rmsprop_bf16.json (per-step loss, grad norm, lr).
Usage: python3 tests/ref/make_bf16_golden.py (after make_train_golden.py, whose files it reads).
"""
import json
import os
import sys

import torch
from transformers import LlamaForCausalLM, get_scheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_train_golden import BATCH, BETA, LR, OUT, STEPS, WARMUP, batch, seq_logps  # noqa: E402


def main():
    with open(os.path.join(OUT, "trajectory_examples.json")) as f:
        exs = json.load(f)
    tiny = os.path.join(OUT, "tiny")
    model = LlamaForCausalLM.from_pretrained(tiny, torch_dtype=torch.float32, attn_implementation="eager")
    ref = LlamaForCausalLM.from_pretrained(tiny, torch_dtype=torch.float32, attn_implementation="eager")
    model.to(torch.bfloat16)
    ref.to(torch.bfloat16)
    ref.eval()
    params = list(model.parameters())
    masters = [p.detach().float().clone().requires_grad_(True) for p in params]
    opt = torch.optim.RMSprop(masters, lr=LR)
    sched = get_scheduler("linear", opt, num_warmup_steps=WARMUP, num_training_steps=STEPS)
    hist = []
    for step in range(STEPS):
        k = step % (len(exs) // BATCH)
        ids, att, lab = batch(exs[k * BATCH:(k + 1) * BATCH])
        b = ids.shape[0] // 2
        pi = seq_logps(model, ids, att, lab)
        with torch.no_grad():
            rf = seq_logps(ref, ids, att, lab)
        logits = (pi[:b] - pi[b:]) - (rf[:b] - rf[b:])
        loss = -torch.nn.functional.logsigmoid(BETA * logits).mean()
        loss.backward()
        for p, m in zip(params, masters):
            m.grad = None if p.grad is None else p.grad.float()
        lr = sched.get_last_lr()[0]
        gn = torch.nn.utils.clip_grad_norm_(masters, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            for p, m in zip(params, masters):
                p.copy_(m.to(torch.bfloat16))
        model.zero_grad(set_to_none=True)
        opt.zero_grad(set_to_none=True)
        hist.append(dict(loss=loss.item(), grad_norm=gn.item(), lr=lr))
        print("bf16 rmsprop", step, hist[-1])
    with open(os.path.join(OUT, "trajectory_rmsprop_bf16.json"), "w") as f:
        json.dump(dict(steps=hist, beta=BETA, lr=LR, warmup=WARMUP, batch=BATCH, torch=torch.__version__), f,
                  indent=1)


if __name__ == "__main__":
    main()
