#!/usr/bin/env python3
"""Golden data for tests/unit/test_optim.c and tests/unit/test_schedule.c.

Writes tests/data/train/optim_golden.safetensors with:

  init.<i>            f32   three parameters of odd sizes: [7], [13, 5], [1000]
  grad.<s>.<i>        f32   fixed gradients for steps s = 0..5; the global L2 norm of step s is
                            NORMS[s], above and below the clip norm 1.0
  bf16.init.<i>, bf16.grad.<s>.<i>
                      f32   the same rounded to bfloat16 (exact bf16 values), for the
                            mixed-precision run
  <run>.lr            f64   [6] the learning rate of each step, from transformers.get_scheduler
  <run>.norm          f32   [6] the total norm clip_grad_norm_ returned (the same formula when the
                            run does not clip)
  <run>.final.<i>     f32   the parameters after 6 steps
  <run>.<state>.<i>   f32   the optimizer state after 6 steps (torch names: square_avg; exp_avg,
                            exp_avg_sq)
  rms_bf16.final_bf16.<i>  bf16  the run's final f32 master rounded to bfloat16
  sched.<type>.<W>.<T>     f64   [T + 2] get_scheduler(type, W, T) learning rates for steps
                                 0..T+1 (base lr SCHED_LR)

Each run follows the HF Trainer order per step: set the lr from the scheduler, clip_grad_norm_
(max_norm 1.0 unless the run says 0: no clipping), optimizer.step(), scheduler.step(). Optimizers
are torch.optim.RMSprop / AdamW on the CPU with foreach=False (the single-tensor code, which the
C kernels follow) and two parameter groups as HF builds them: parameter 0 (a "bias") gets weight
decay 0, the others the run's weight decay.

Run from the repository root:  python3 tests/ref/make_optim_golden.py
Needs torch, transformers and safetensors (tested with torch 2.5.1, transformers 4.46.3; the
schedule lambdas are unchanged since 4.37.0).
"""
import os
import stat

import torch
import transformers
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "train", "optim_golden.safetensors")
SHAPES = [(7,), (13, 5), (1000,)]
STEPS = 6
NORMS = [3.0, 0.25, 1.7, 0.05, 12.0, 0.6]
SCHED_LR = 5e-7

# name: (optimizer, weight decay, scheduler, warmup, base lr, max_grad_norm, bf16 inputs)
RUNS = {
    "rms_lin": ("rmsprop", 0.0, "linear", 2, 1e-2, 1.0, False),
    "rms_cos_wd": ("rmsprop", 0.01, "cosine", 1, 1e-2, 1.0, False),
    "adamw_lin": ("adamw", 0.0, "linear", 2, 1e-3, 1.0, False),
    "adamw_cos_wd": ("adamw", 0.01, "cosine", 0, 1e-3, 1.0, False),
    "adamw_noclip": ("adamw", 0.1, "constant", 0, 1e-3, 0.0, False),
    "rms_bf16": ("rmsprop", 0.0, "linear", 2, 1e-2, 1.0, True),
}

# (type, warmup, total) for the schedule comparison
SCHEDS = [
    ("linear", 0, 10),
    ("linear", 3, 10),
    ("linear", 4, 30),
    ("linear", 467, 4668),
    ("cosine", 0, 10),
    ("cosine", 3, 10),
    ("cosine", 2, 7),
    ("constant", 0, 5),
    ("constant_with_warmup", 3, 8),
]


def inputs():
    gen = torch.Generator().manual_seed(1234)
    init = [torch.randn(s, generator=gen) * 0.5 for s in SHAPES]
    grads = []
    for s in range(STEPS):
        g = [torch.randn(sh, generator=gen) * (1.0 + i) for i, sh in enumerate(SHAPES)]
        total = torch.sqrt(sum((x.double() ** 2).sum() for x in g))
        grads.append([(x.double() * (NORMS[s] / total)).float() for x in g])
    return init, grads


def run(name, cfg, init, grads):
    kind, wd, sched, warmup, lr, max_norm, _ = cfg
    params = [torch.nn.Parameter(p.clone()) for p in init]
    groups = [{"params": params[:1], "weight_decay": 0.0}, {"params": params[1:], "weight_decay": wd}]
    if kind == "rmsprop":
        opt = torch.optim.RMSprop(groups, lr=lr, foreach=False)
        state_names = ["square_avg"]
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)
        state_names = ["exp_avg", "exp_avg_sq"]
    scheduler = transformers.get_scheduler(sched, opt, num_warmup_steps=warmup, num_training_steps=STEPS)
    out, lrs, norms = {}, [], []
    for s in range(STEPS):
        for p, g in zip(params, grads[s]):
            p.grad = g.clone()
        lrs.append(opt.param_groups[0]["lr"])
        if max_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        norms.append(float(norm))
        opt.step()
        scheduler.step()
        opt.zero_grad()
    out[f"{name}.lr"] = torch.tensor(lrs, dtype=torch.float64)
    out[f"{name}.norm"] = torch.tensor(norms, dtype=torch.float32)
    for i, p in enumerate(params):
        out[f"{name}.final.{i}"] = p.detach().clone()
        st = opt.state[p]
        assert int(st["step"]) == STEPS
        for sn in state_names:
            out[f"{name}.{sn}.{i}"] = st[sn].clone()
    return out


def main():
    torch.set_num_threads(1)
    init, grads = inputs()
    bf_init = [p.bfloat16().float() for p in init]
    bf_grads = [[g.bfloat16().float() for g in gs] for gs in grads]
    out = {}
    for i in range(len(SHAPES)):
        out[f"init.{i}"] = init[i]
        out[f"bf16.init.{i}"] = bf_init[i]
        for s in range(STEPS):
            out[f"grad.{s}.{i}"] = grads[s][i]
            out[f"bf16.grad.{s}.{i}"] = bf_grads[s][i]
    for name, cfg in RUNS.items():
        bf16 = cfg[6]
        out.update(run(name, cfg, bf_init if bf16 else init, bf_grads if bf16 else grads))
        if bf16:
            for i in range(len(SHAPES)):
                out[f"{name}.final_bf16.{i}"] = out[f"{name}.final.{i}"].bfloat16()
    for kind, warmup, total in SCHEDS:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=SCHED_LR)
        sch = transformers.get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=total)
        lrs = []
        for _ in range(total + 2):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()  # no gradients: only keeps the scheduler from warning about the call order
            sch.step()
        out[f"sched.{kind}.{warmup}.{total}"] = torch.tensor(lrs, dtype=torch.float64)
    out = {k: v.contiguous() for k, v in out.items()}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(out, OUT, metadata={"torch": torch.__version__, "transformers": transformers.__version__})
    os.chmod(OUT, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    print(f"wrote {OUT}: {len(out)} tensors")


if __name__ == "__main__":
    main()
