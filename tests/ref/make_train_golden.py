#!/usr/bin/env python3
"""Golden 10-step SPIN training trajectories of a tiny Llama (transformers + torch), for
tests/unit/test_trainer.c.

The policy is trained on fixed token rows with uclaml/SPIN's loss (sigmoid, beta 0.1, summed
response log-probs, a frozen copy of the initial model as the opponent), built as TRL-0.7.4's
collator and SPINTrainer.concatenated_inputs build them: each side right-padded with pad_id to its
own longest row, then both padded with 0 to the common length, labels -100 on prompt and padding,
attention 0 on padding and on EOS tokens inside the text. HF Trainer semantics per update: loss =
mean over the batch, backward, clip_grad_norm_(1.0), optimizer.step(), scheduler.step(). Runs once
with torch.optim.RMSprop (PyTorch defaults) and once with torch.optim.AdamW (weight_decay 0.01),
both under transformers' linear schedule with warmup, examples taken in order (no shuffle).

Writes tests/data/train/tiny/{config.json, model.safetensors} (the initial weights) and
tests/data/train/trajectory_{rmsprop,adamw}.{json,safetensors} (per-step loss, grad norm, lr;
final parameters). Usage: python3 tests/ref/make_train_golden.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, get_scheduler

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "train")
EOS, PAD = 2, 2
STEPS, BATCH, BETA, LR, WARMUP = 10, 4, 0.1, 1e-3, 3


def examples():
    g = torch.Generator().manual_seed(7)
    ex = []
    for i in range(8):
        lp, lc, lr = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((3, 8), (2, 7), (2, 7)))
        rand = lambda n: [int(t) for t in torch.randint(3, 64, (n,), generator=g)]
        prompt, chosen, rejected = rand(lp), rand(lc), rand(lr)
        pa, ca, ra = [1] * lp, [1] * lc, [1] * lr
        if i == 2:  # an EOS inside the prompt text: kept as a token, attention 0 (collator step 2)
            prompt[1], pa[1] = EOS, 0
        if i == 5:  # and inside a response
            chosen[0], ca[0] = EOS, 0
        # the collator appends EOS with attention 1 to both responses
        ex.append(dict(prompt=prompt, chosen=chosen + [EOS], rejected=rejected + [EOS],
                       prompt_attn=pa, chosen_attn=ca + [1], rejected_attn=ra + [1]))
    return ex


def batch(exs):
    """[chosen rows; rejected rows] exactly as collator + concatenated_inputs pad them."""
    sides = []
    for key in ("chosen", "rejected"):
        ids = [e["prompt"] + e[key] for e in exs]
        att = [e["prompt_attn"] + e[key + "_attn"] for e in exs]
        lab = [[-100] * len(e["prompt"]) + e[key] for e in exs]
        n = max(len(r) for r in ids)
        ids = [r + [PAD] * (n - len(r)) for r in ids]
        att = [r + [0] * (n - len(r)) for r in att]
        lab = [r + [-100] * (n - len(r)) for r in lab]
        sides.append((ids, att, lab))
    t = max(len(s[0][0]) for s in sides)
    ids, att, lab = [], [], []
    for s in sides:
        n = len(s[0][0])
        ids += [r + [0] * (t - n) for r in s[0]]
        att += [r + [0] * (t - n) for r in s[1]]
        lab += [r + [-100] * (t - n) for r in s[2]]
    return torch.tensor(ids), torch.tensor(att), torch.tensor(lab)


def seq_logps(model, ids, att, lab):
    logits = model(input_ids=ids, attention_mask=att).logits.float()
    labels, logits = lab[:, 1:].clone(), logits[:, :-1, :]
    mask = labels != -100
    labels[~mask] = 0
    tok = torch.gather(logits.log_softmax(-1), 2, labels.unsqueeze(2)).squeeze(2)
    return (tok * mask).sum(-1)


def run(opt_name, init_state, cfg, exs):
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(init_state)
    ref = LlamaForCausalLM(cfg)
    ref.load_state_dict(init_state)
    ref.eval()
    if opt_name == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=LR)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
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
        lr = sched.get_last_lr()[0]
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        hist.append(dict(loss=loss.item(), grad_norm=gn.item(), lr=lr))
        print(opt_name, step, hist[-1])
    with open(os.path.join(OUT, f"trajectory_{opt_name}.json"), "w") as f:
        json.dump(dict(steps=hist, beta=BETA, lr=LR, warmup=WARMUP, batch=BATCH), f, indent=1)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              os.path.join(OUT, f"trajectory_{opt_name}.safetensors"))


def main():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
                      eos_token_id=EOS, pad_token_id=PAD, initializer_range=0.2, attn_implementation="eager")
    model = LlamaForCausalLM(cfg)
    os.makedirs(os.path.join(OUT, "tiny"), exist_ok=True)
    model.save_pretrained(os.path.join(OUT, "tiny"), safe_serialization=True)
    exs = examples()
    with open(os.path.join(OUT, "trajectory_examples.json"), "w") as f:
        json.dump(exs, f)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("rmsprop", "adamw"):
        run(name, state, cfg, exs)


if __name__ == "__main__":
    main()
