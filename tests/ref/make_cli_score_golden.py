#!/usr/bin/env python3
"""Golden opponent scores for `spin score` (tests/cli/test_train.sh): S_op(real) and S_op(generated)
of every row of tests/data/cli/train/spin_16.jsonl under the tiny Llama (tests/data/train/tiny) with
the 64-token character tokenizer of tests/data/cli/train, computed the way uclaml/SPIN computes them,
written to tests/data/cli/train/score_golden.txt ("real generated" per row, in file order).

What is reproduced (spin-reference.md §2.5.3-2.5.5):
* templating: uclaml/SPIN spin/alignment/data.py:apply_chat_template (prompt = [system "", first
  user message of real] with add_generation_prompt; real/generated = template(x[1:]) with the
  leading "<|assistant|>\\n" removed), through transformers' own apply_chat_template with the
  zephyr template of tokenizer_config.json;
* the collator (TRL-0.7.4 DPODataCollatorWithPadding.tokenize_batch_element, decoder-only): prompt,
  real and generated tokenised separately without special tokens, attention 0 at EOS ids inside
  the text (row 6 holds "</s>" in its generated response), EOS appended with attention 1, labels
  -100 on the prompt (no truncation: rows are far below max_length 1024);
* SPINTrainer.concatenated_forward / get_batch_logps: one forward per row with its attention mask
  (transformers LlamaForCausalLM, f32, eval), logits[:, :-1] against labels[:, 1:], log_softmax in
  f32, summed over the response tokens.

Usage: python3 tests/ref/make_cli_score_golden.py   (torch, transformers, tokenizers)
"""

import json
import os
import re

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.path.join(HERE, "..", "data", "cli", "train")
TINY = os.path.join(HERE, "..", "data", "train", "tiny")


def main():
    cfg = json.load(open(os.path.join(CLI, "tokenizer_config.json")))
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(CLI, "tokenizer.json"), bos_token=cfg["bos_token"],
                                  eos_token=cfg["eos_token"], pad_token=cfg["pad_token"])
    tok.chat_template = cfg["chat_template"]
    eos = tok.eos_token_id
    model = LlamaForCausalLM.from_pretrained(TINY, torch_dtype=torch.float32).eval()

    def strip(s):
        return re.sub("^" + re.escape("<|assistant|>\n"), "", s)

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    def score(prompt_ids, resp_ids):
        # attention 0 at EOS inside the tokenised texts, then the appended EOS with attention 1
        attn = [0 if t == eos else 1 for t in prompt_ids] + [0 if t == eos else 1 for t in resp_ids] + [1]
        row = prompt_ids + resp_ids + [eos]
        labels = [-100] * len(prompt_ids) + resp_ids + [eos]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row]), attention_mask=torch.tensor([attn])).logits.float()
        lab = torch.tensor([labels])[:, 1:]
        lp = logits[:, :-1].log_softmax(-1)
        mask = lab != -100
        tok_lp = torch.gather(lp, 2, lab.clamp(min=0).unsqueeze(2)).squeeze(2)
        return (tok_lp * mask).sum(-1).item()

    out = []
    for line in open(os.path.join(CLI, "spin_16.jsonl")):
        ex = json.loads(line)
        user = [m for m in ex["real"] if m["role"] == "user"][0]
        system = ex["real"][0] if ex["real"][0]["role"] == "system" else {"role": "system", "content": ""}
        prompt = tok.apply_chat_template([system, user], tokenize=False, add_generation_prompt=True)
        real = strip(tok.apply_chat_template(ex["real"][1:], tokenize=False))
        gen = strip(tok.apply_chat_template(ex["generated"][1:], tokenize=False))
        p = ids(prompt)
        out.append((score(p, ids(real)), score(p, ids(gen))))
    with open(os.path.join(CLI, "score_golden.txt"), "w") as f:
        f.write("".join("%.9g %.9g\n" % r for r in out))
    print("wrote", len(out), "rows")


if __name__ == "__main__":
    main()
