#!/usr/bin/env python3
"""Golden values for tests/unit/test_pref_loss.c (train/pref_loss.c), in float64 torch.

For each case (one loss type with its beta, label_smoothing and reference_free; B = 5) it writes
the f32 inputs and, computed in float64 from exactly those f32 values: the per-example losses, the
batch loss, the gradients of the batch loss w.r.t. policy_chosen and policy_rejected (autograd),
and the rewards beta*(policy - ref).

Formulas follow the sources (spin-reference.md §1.2, §3.1, §5.2):
  * sigmoid / robust / hinge / ipo / sppo_hard: TRL 0.12.2 trl/trainer/dpo_trainer.py dpo_loss; ipo
    gets logps divided by the completion length first, as TRL's concatenated_forward does for
    "ipo", so its rewards are of the normalised logps too.
  * sppo / sppo_single: uclaml/SPPO sppo/trainer.py dpo_loss (with the 1/2 of
    `losses = (loss_w + loss_l)/2`).
  * sft: token-mean cross-entropy of the chosen response, -sum(pc)/sum(len_c) (per example
    -pc/len_c).
reference_free means every ref logp is taken as 0, rewards included (the C API's contract; TRL
0.12 still subtracts the given refs in its rewards and in sppo_hard). The cases pass non-zero refs
anyway, so the C test checks they are ignored.

TRL cross-check: if `trl` imports, its DPOTrainer.dpo_loss is called unbound with a
SimpleNamespace self; otherwise, with --trl-src PATH/trl/trainer/dpo_trainer.py (e.g. unpacked from
the trl-0.12.2 wheel: `pip download --no-deps trl==0.12.2`), that file's dpo_loss function is
compiled on its own. Without either the cross-check is skipped (and says so). Losses and rewards
must agree to 1e-12 (both float64).

Writes tests/data/train/loss_golden.safetensors. Usage:
  python3 tests/ref/make_loss_golden.py [--trl-src .../trl/trainer/dpo_trainer.py]
"""
import argparse
import ast
import enum
import os
import types
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "train", "loss_golden.safetensors")
B = 5

# (name, loss_type, beta, label_smoothing, reference_free, seed, extreme)
# extreme: two examples get |beta*Delta| of ~60 and ~25, where a naive log(sigmoid) under/overflows.
CASES = [
    ("sigmoid/base", "sigmoid", 0.1, 0.0, False, 1, True),
    ("sigmoid/cdpo", "sigmoid", 0.1, 0.1, False, 2, True),
    ("sigmoid/reference_free", "sigmoid", 0.5, 0.0, True, 3, False),
    ("robust/ls", "robust", 0.1, 0.1, False, 4, True),
    ("robust/zero", "robust", 0.25, 0.0, False, 5, False),
    ("hinge/base", "hinge", 0.1, 0.0, False, 6, False),
    ("ipo/base", "ipo", 0.1, 0.0, False, 7, False),
    ("ipo/reference_free", "ipo", 0.5, 0.0, True, 8, False),
    ("sppo/beta0.001", "sppo", 0.001, 0.0, False, 9, False),  # SPPO's recipes use beta 0.001 (eta 1e3)
    ("sppo/beta0.1", "sppo", 0.1, 0.0, False, 10, False),
    ("sppo_single/base", "sppo_single", 0.1, 0.0, False, 11, False),
    ("sppo_hard/base", "sppo_hard", 0.1, 0.0, False, 12, False),
    ("sppo_hard/reference_free", "sppo_hard", 0.2, 0.0, True, 13, False),
    ("sft/base", "sft", 0.1, 0.0, False, 14, False),
]


def f32(x):
    """Rounds to float32 and back, so the C test sees exactly the values used here."""
    return torch.as_tensor(x, dtype=torch.float32).to(torch.float64)


def make_inputs(seed, beta, extreme, loss_type):
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)
    len_c = torch.randint(3, 60, (B,), generator=g).to(torch.float64)
    len_r = torch.randint(3, 60, (B,), generator=g).to(torch.float64)
    pc, pr = -len_c * u(0.5, 3.0), -len_r * u(0.5, 3.0)  # summed logps: ~-0.5..-3 nats a token
    rc, rr = pc + u(-4, 4), pr + u(-4, 4)
    if extreme:  # Delta = 600 and -250: beta*Delta = 60 and -25 at beta 0.1
        pc[0], rc[0], pr[0], rr[0] = -20.0, -80.0, -560.0, -20.0
        pc[1], rc[1], pr[1], rr[1] = -300.0, -60.0, -12.0, -22.0
    if loss_type == "hinge":  # keep every example off the kink 1 - beta*Delta = 0 (the subgradient is a convention)
        d = (pc - rc) - (pr - rr)
        pc = torch.where((1 - beta * d).abs() < 0.5, pc + 12.0, pc)
    probs = u(0.05, 0.95)
    p_win, p_lose = u(0.5, 0.95), u(0.05, 0.5)
    return {k: f32(v) for k, v in dict(policy_chosen=pc, policy_rejected=pr, ref_chosen=rc, ref_rejected=rr,
                                       len_chosen=len_c, len_rejected=len_r, probs_chosen=probs, probs_win=p_win,
                                       probs_lose=p_lose).items()}


def reference(loss_type, beta, ls, rf, x):
    """(losses, loss, chosen_rewards, rejected_rewards) in float64; x's policy_* require grad."""
    pc, pr = x["policy_chosen"], x["policy_rejected"]
    rc = torch.zeros_like(pc) if rf else x["ref_chosen"]
    rr = torch.zeros_like(pr) if rf else x["ref_rejected"]
    if loss_type == "ipo":
        pc, pr, rc, rr = pc / x["len_chosen"], pr / x["len_rejected"], rc / x["len_chosen"], rr / x["len_rejected"]
    a, b = pc - rc, pr - rr
    z = beta * (a - b)
    if loss_type == "sigmoid":
        losses = -(1 - ls) * F.logsigmoid(z) - ls * F.logsigmoid(-z)
    elif loss_type == "robust":
        losses = (-(1 - ls) * F.logsigmoid(z) + ls * F.logsigmoid(-z)) / (1 - 2 * ls)
    elif loss_type == "hinge":
        losses = torch.relu(1 - z)
    elif loss_type == "ipo":
        losses = ((a - b) - 1 / (2 * beta)) ** 2
    elif loss_type == "sppo":
        losses = ((a - (x["probs_win"] - 0.5) / beta) ** 2 + (b - (x["probs_lose"] - 0.5) / beta) ** 2) / 2
    elif loss_type == "sppo_single":
        p = x["probs_chosen"]
        losses = ((a - (p - 0.5) / beta) ** 2 + (b + (p - 0.5) / beta) ** 2) / 2
    elif loss_type == "sppo_hard":
        losses = (a - 0.5 / beta) ** 2 + (b + 0.5 / beta) ** 2
    elif loss_type == "sft":
        losses = -x["policy_chosen"] / x["len_chosen"]
    else:
        raise ValueError(loss_type)
    loss = -x["policy_chosen"].sum() / x["len_chosen"].sum() if loss_type == "sft" else losses.mean()
    return losses, loss, (beta * a).detach(), (beta * b).detach()


class _FDivergenceType(enum.Enum):  # the two values trl 0.12.2's dpo_loss compares against
    ALPHA_DIVERGENCE = "alpha_divergence"
    JS_DIVERGENCE = "js_divergence"


def load_trl_dpo_loss(trl_src):
    try:
        from trl import DPOTrainer  # noqa: F401

        return DPOTrainer.dpo_loss, "installed trl"
    except Exception as e:  # noqa: BLE001 - any import failure means: no installed TRL to use
        why = f"trl not importable ({type(e).__name__}: {e})"
    if not trl_src:
        return None, why
    tree = ast.parse(open(trl_src).read())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "dpo_loss")
    ns = dict(torch=torch, F=F, Tuple=Tuple, FDivergenceType=_FDivergenceType, FDivergenceConstants=None,
              cap_exp=None)
    exec(compile(ast.Module(body=[fn], type_ignores=[]), trl_src, "exec"), ns)
    return ns["dpo_loss"], f"dpo_loss compiled from {trl_src}"


def trl_check(dpo_loss, loss_type, beta, ls, rf, x, losses, rc_, rr_):
    self = types.SimpleNamespace(beta=beta, loss_type=loss_type, label_smoothing=ls, reference_free=rf,
                                 f_divergence_type="reverse_kl", f_divergence_params={},
                                 accelerator=types.SimpleNamespace(device=torch.device("cpu")))
    pc, pr = x["policy_chosen"].detach(), x["policy_rejected"].detach()
    # Our reference_free zeroes the refs everywhere; TRL's rewards/sppo_hard would still use them.
    rc = torch.zeros_like(pc) if rf else x["ref_chosen"]
    rr = torch.zeros_like(pr) if rf else x["ref_rejected"]
    if loss_type == "ipo":  # TRL divides by the length in concatenated_forward, before dpo_loss
        pc, rc, pr, rr = pc / x["len_chosen"], rc / x["len_chosen"], pr / x["len_rejected"], rr / x["len_rejected"]
    t_losses, t_rc, t_rr = dpo_loss(self, pc, pr, rc, rr)
    for what, mine, theirs in (("losses", losses, t_losses), ("chosen_rewards", rc_, t_rc),
                               ("rejected_rewards", rr_, t_rr)):
        err = (mine.detach() - theirs).abs().max().item()
        assert err <= 1e-12 * max(1.0, theirs.abs().max().item()), f"{loss_type}: {what} differs from TRL by {err}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trl-src", help="path to trl 0.12.2's trl/trainer/dpo_trainer.py, if trl is not installed")
    args = ap.parse_args()
    dpo_loss, how = load_trl_dpo_loss(args.trl_src)
    print(f"TRL cross-check: {how}" if dpo_loss else f"TRL cross-check SKIPPED: {how}")

    out = {}
    for name, loss_type, beta, ls, rf, seed, extreme in CASES:
        beta, ls = float(np.float32(beta)), float(np.float32(ls))  # the C side holds them as float
        x = make_inputs(seed, beta, extreme, loss_type)
        for k in ("policy_chosen", "policy_rejected"):
            x[k].requires_grad_(True)
        losses, loss, rc, rr = reference(loss_type, beta, ls, rf, x)
        loss.backward()
        checked = dpo_loss is not None and loss_type in ("sigmoid", "robust", "hinge", "ipo", "sppo_hard")
        if checked:
            trl_check(dpo_loss, loss_type, beta, ls, rf, x, losses, rc, rr)
        gc, gr = x["policy_chosen"].grad, x["policy_rejected"].grad
        res = dict(losses=losses.detach(), loss=loss.detach().reshape(1),
                   grad_policy_chosen=gc if gc is not None else torch.zeros(B, dtype=torch.float64),
                   grad_policy_rejected=gr if gr is not None else torch.zeros(B, dtype=torch.float64),
                   chosen_rewards=rc, rejected_rewards=rr)
        out[f"{name}.opts"] = torch.tensor([beta, ls, float(rf)])
        for k, v in list(x.items()) + list(res.items()):
            out[f"{name}.{k}"] = v.detach().to(torch.float32).contiguous()
        print(f"{name:26s} loss {loss.item():14.6g}  beta*Delta {[round(v, 2) for v in (rc - rr).tolist()]}"
              f"{'  (= TRL)' if checked else ''}")
    save_file(out, OUT, metadata={"format": "pt", "generator": "tests/ref/make_loss_golden.py"})
    print(f"wrote {len(CASES)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
