#!/usr/bin/env python3
"""Golden data for train/pref_data.c (reading + templating preference data) and train/collate.c
(tokenising, truncation, batching), written to tests/data/train/collate_*.

What is re-implemented here, from the sources (uclaml/SPIN is pinned to trl==0.7.4; line numbers
are those of the stored copies of the commits named):

* Templating of SPIN rows: uclaml/SPIN spin/alignment/data.py:apply_chat_template (commit eedf90e,
  lines 16-45; spin-reference.md §2.5.3): prompt = [system, first user message of real], system ""
  unless real[0] is a system message, rendered with add_generation_prompt; real/generated =
  template(real[1:]) / template(generated[1:]) with a leading "<|assistant|>\\n" removed
  (re.sub("^" + re.escape(prefix), "", s): only at the start, at most once).
* Templating of DPO/SPPO message-list rows, as train/pref_data.h documents it (alignment-handbook /
  TRL conversational data): prompt = template(P, add_generation_prompt) where P is the "prompt"
  column when it is a message list, else chosen[:-1]; chosen/rejected = template(response messages)
  with the leading "<|assistant|>\\n" removed, exactly as for SPIN. DPO string rows are used as-is.
* The zephyr template is rendered with jinja2 the way transformers' apply_chat_template does
  (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, bos_token/eos_token as
  variables) and, when transformers is importable, checked equal to apply_chat_template itself.
* Tokenisation + truncation + labels: DataCollatorWithPadding.tokenize_batch_element, decoder-only
  branch (uclaml/SPIN spin/alignment/utils.py, commit eedf90e, lines 70-132; a copy of TRL-0.7.4's
  DPODataCollatorWithPadding; spin-reference.md §2.5.4 steps 1-5). The tokenizer is the Python
  `tokenizers` library on the real Mistral/zephyr tokenizer.json (read from ../shared, never copied)
  and on the committed tiny SentencePiece-style tokenizer tests/data/tokenizer/tiny-sp-normalizer.json
  (so CI without ../shared still checks tokenisation); `tokenizer(text, add_special_tokens=False)`
  of a fast tokenizer is Tokenizer.encode(text, add_special_tokens=False) (checked against
  transformers' PreTrainedTokenizerFast when importable).
* Padding: DataCollatorWithPadding.collate (same file; decoder-only branch: input_ids padded with
  pad_token_id, labels with -100, attention_mask with padding_value=0, via torch pad_sequence) and
  SPINTrainer.concatenated_inputs (uclaml/SPIN spin/alignment/trainer.py, spin-reference.md §2.5.4
  step 7, trainer.py:377-413 at a12ba80): real and generated padded to the common length with
  padding_value=0 for input_ids and attention_mask and -100 for labels (trl.trainer.utils
  pad_to_length), stacked [real; generated].
* spin_pref_tokens_hash: FNV-1a 64 over the serialisation documented in train/collate.h.

Usage: python3 tests/ref/make_collate_golden.py   (torch, tokenizers, jinja2; transformers optional)
"""

import json
import math
import os
import re
import sys

import jinja2
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer
from torch.nn.utils.rnn import pad_sequence

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(DATA, "train")
SHARED = os.path.join(HERE, "..", "..", "..", "shared")

# uclaml/SPIN@a12ba80:spin/alignment/data.py:13 (spin-reference.md §6), byte for byte.
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
    "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)
BOS, EOS = "<s>", "</s>"
ASSISTANT_PREFIX = "<|assistant|>\n"  # data.py:apply_chat_template's assistant_prefix default

TOKENIZERS = {
    # name -> (path as the C test resolves it, absolute path here)
    "mistral": ("shared:data/tokenizers/mistral-tokenizer.json",
                os.path.join(SHARED, "data", "tokenizers", "mistral-tokenizer.json")),
    "tiny": ("data:tokenizer/tiny-sp-normalizer.json",
             os.path.join(DATA, "tokenizer", "tiny-sp-normalizer.json")),
}

_env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
_template = _env.from_string(ZEPHYR)

try:
    from transformers import PreTrainedTokenizerFast
    _hf = PreTrainedTokenizerFast(tokenizer_file=TOKENIZERS["tiny"][1], bos_token=BOS, eos_token=EOS)
    _hf.chat_template = ZEPHYR
except Exception as e:  # transformers is only a cross-check
    print("note: transformers not usable (%s); jinja2 rendering is not cross-checked" % e)
    _hf = None


def render(messages, add_generation_prompt=False):
    out = _template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           bos_token=BOS, eos_token=EOS)
    if _hf is not None:
        ref = _hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert ref == out, (ref, out)
    return out


def strip_prefix(s, pattern):
    return re.sub(f"^{re.escape(pattern)}", "", s)  # data.py:_strip_prefix


# ---- the crafted rows --------------------------------------------------------------------------

def u(c):
    return {"role": "user", "content": c}


def a(c):
    return {"role": "assistant", "content": c}


def s(c):
    return {"role": "system", "content": c}


LONG_Q = ("Please read the following paragraph carefully and then summarise it in a single short "
          "sentence: the committee met on Tuesday, argued about the budget for three hours, and "
          "finally agreed to postpone every decision until the spring meeting.")
LONG_A = ("Sure. Here is a fairly long answer that keeps going for a while so that the response must "
          "be cut to the length the collator allows, which also cuts off the end-of-sequence token "
          "that the collator appended after the templated text.")

SPIN_ROWS = [
    {"real": [u("Hi?"), a("Hello! How can I help?")], "generated": [u("Hi?"), a("Hey.")]},
    # an embedded "</s>" in the prompt and in both responses: its attention bit is 0
    {"real": [u("What does the token </s> mean?"), a("It ends a sequence: text</s> stops.")],
     "generated": [u("What does the token </s> mean?"), a("No idea </s>")]},
    # a prompt longer than max_prompt_length while prompt+response > max_length
    {"real": [u(LONG_Q), a("They postponed.")], "generated": [u(LONG_Q), a("Budget talk.")]},
    # responses longer than max_length - max_prompt_length: cut, appended EOS cut off; the short
    # generated response keeps its EOS
    {"real": [u("Talk."), a(LONG_A)], "generated": [u("Talk."), a("Short reply.")]},
    # a system message first: prompt keeps it; real[1:] then starts with the user turn (SPIN quirk)
    {"real": [s("You are terse."), u("Name a colour."), a("Blue.")],
     "generated": [s("You are terse."), u("Name a colour."), a("Red, probably.")]},
    # unicode (accents, CJK, Cyrillic, emoji) and whitespace at the ends of a response
    {"real": [u("Ünïcödé: 你好, мир! 🙂 Café?"), a("Grüße 👋 — ça va? 日本語もOK.")],
     "generated": [u("Ünïcödé: 你好, мир! 🙂 Café?"), a(" leading space and trailing newline\n")]},
    # multi-turn real data: everything after the first message is the response
    {"real": [u("A?"), a("B."), u("C?"), a("D.")], "generated": [u("A?"), a("")]},
]

DPO_STR_ROWS = [
    {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5", "id": 1},
    {"prompt": "Say </s> twice.", "chosen": " </s> </s>", "rejected": "no"},
    {"prompt": LONG_Q, "chosen": " They postponed everything.", "rejected": LONG_A},
    {"prompt": "Übersetze: 猫", "chosen": " Katze 🐱", "rejected": " Hund"},
    # a short prompt and a long response: the response is still cut to max_length - max_prompt_length
    # although the prompt leaves more room
    {"prompt": "Talk:", "chosen": LONG_A, "rejected": " ok"},
]

DPO_MSG_ROWS = [
    # ultrafeedback_binarized style: a string "prompt" column is ignored, P = chosen[:-1]
    {"prompt": "Hi?", "chosen": [u("Hi?"), a("Hello!")], "rejected": [u("Hi?"), a("Go away.")],
     "score_chosen": 8.0},
    {"chosen": [s("Be kind."), u("A?"), a("B."), u("C </s>?"), a("D </s>.")],
     "rejected": [s("Be kind."), u("A?"), a("B."), u("C </s>?"), a(LONG_A)]},
    # TRL conversational with an explicit prompt list
    {"prompt": [u(LONG_Q)], "chosen": [a("Postponed.")], "rejected": [a("Ünïcödé 🙂")]},
]

SPPO_ROWS = [
    {"prompt": "Hi?", "chosen": [u("Hi?"), a("Hello!")], "rejected": [u("Hi?"), a("Hey.")],
     "chosen_probs": 0.7310585786300049, "chosen_probs_win": 0.62, "chosen_probs_lose": 0.3},
    {"chosen": [u(LONG_Q), a(LONG_A)], "rejected": [u(LONG_Q), a("Meh.")],
     "chosen_probs": 1, "chosen_probs_win": 0.5, "chosen_probs_lose": 0},
]


# ---- templating (what spin_pref_data_read must produce) ------------------------------------------

def template_spin(row):
    # data.py:apply_chat_template, lines 23-40 (commit eedf90e)
    prompt_messages = [[m for m in row["real"] if m["role"] == "user"][0]]
    if row["real"][0]["role"] != "system":
        prompt_messages.insert(0, {"role": "system", "content": ""})
    else:
        prompt_messages.insert(0, row["real"][0])
    text_real = render(row["real"][1:])
    text_generated = render(row["generated"][1:])
    text_prompt = render(prompt_messages, add_generation_prompt=True)
    return {"prompt": text_prompt, "chosen": strip_prefix(text_real, ASSISTANT_PREFIX),
            "rejected": strip_prefix(text_generated, ASSISTANT_PREFIX)}


def template_dpo(row):
    if isinstance(row["chosen"], str):
        return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}
    if isinstance(row.get("prompt"), list):
        prompt_messages, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    else:
        assert row["chosen"][:-1] == row["rejected"][:-1]
        prompt_messages, chosen, rejected = row["chosen"][:-1], row["chosen"][-1:], row["rejected"][-1:]
    return {"prompt": render(prompt_messages, add_generation_prompt=True),
            "chosen": strip_prefix(render(chosen), ASSISTANT_PREFIX),
            "rejected": strip_prefix(render(rejected), ASSISTANT_PREFIX)}


def with_probs(row, ex):
    for key, col in (("probs_chosen", "chosen_probs"), ("probs_win", "chosen_probs_win"),
                     ("probs_lose", "chosen_probs_lose")):
        ex[key] = float(row[col]) if col in row else None  # None: NAN in C
    return ex


FILES = [
    ("collate_spin.jsonl", "spin", SPIN_ROWS, template_spin),
    ("collate_dpo_str.jsonl", "dpo", DPO_STR_ROWS, template_dpo),
    ("collate_dpo_msg.jsonl", "dpo", DPO_MSG_ROWS, template_dpo),
    ("collate_sppo.jsonl", "sppo", SPPO_ROWS, template_dpo),
]


# ---- the collator (utils.py DataCollatorWithPadding, decoder-only) --------------------------------

def tokenize_batch_element(tok, eos_token_id, prompt, chosen, rejected, max_length, max_prompt_length,
                           truncation_mode):
    def encode(text):
        e = tok.encode(text, add_special_tokens=False)
        return {"input_ids": list(e.ids), "attention_mask": list(e.attention_mask)}

    chosen_tokens, rejected_tokens, prompt_tokens = encode(chosen), encode(rejected), encode(prompt)
    # utils.py:75-95: attention 0 at every EOS inside the tokenised texts
    for t in (prompt_tokens, chosen_tokens, rejected_tokens):
        eos_idx = [i for i, x in enumerate(t["input_ids"]) if x == eos_token_id]
        t["attention_mask"] = [0 if i in eos_idx else p for i, p in enumerate(t["attention_mask"])]
    # utils.py:97-102: EOS appended to both responses
    for t in (chosen_tokens, rejected_tokens):
        t["input_ids"].append(eos_token_id)
        t["attention_mask"].append(1)
    longer_response_length = max(len(chosen_tokens["input_ids"]), len(rejected_tokens["input_ids"]))
    # utils.py:106-113: prompt truncation
    if len(prompt_tokens["input_ids"]) + longer_response_length > max_length:
        if truncation_mode == "keep_start":
            prompt_tokens = {k: v[:max_prompt_length] for k, v in prompt_tokens.items()}
        elif truncation_mode == "keep_end":
            prompt_tokens = {k: v[-max_prompt_length:] for k, v in prompt_tokens.items()}
        else:
            raise ValueError(truncation_mode)
    # utils.py:115-120: response truncation (note: to max_length - max_prompt_length)
    if len(prompt_tokens["input_ids"]) + longer_response_length > max_length:
        chosen_tokens = {k: v[: max_length - max_prompt_length] for k, v in chosen_tokens.items()}
        rejected_tokens = {k: v[: max_length - max_prompt_length] for k, v in rejected_tokens.items()}
    # utils.py:122-132: sequences and labels
    batch = {}
    for name, resp in (("real", chosen_tokens), ("generated", rejected_tokens)):
        seq = {k: prompt_tokens[k] + resp[k] for k in resp}
        seq["labels"] = seq["input_ids"][:]
        seq["labels"][: len(prompt_tokens["input_ids"])] = [-100] * len(prompt_tokens["input_ids"])
        for k, v in seq.items():
            batch[f"{name}_{k}"] = v
    for k, v in prompt_tokens.items():
        batch[f"prompt_{k}"] = v
    rows = {"prompt": prompt_tokens["input_ids"], "prompt_attn": prompt_tokens["attention_mask"],
            "chosen": chosen_tokens["input_ids"], "chosen_attn": chosen_tokens["attention_mask"],
            "rejected": rejected_tokens["input_ids"], "rejected_attn": rejected_tokens["attention_mask"]}
    return batch, rows


def collate(elements, pad_token_id, label_pad_token_id=-100, padding_value=0):
    # utils.py DataCollatorWithPadding.collate, decoder-only branch
    padded = {}
    for k in elements[0].keys():
        if "prompt" in k:
            to_pad = [torch.LongTensor(ex[k][::-1]) for ex in elements]
        else:
            to_pad = [torch.LongTensor(ex[k]) for ex in elements]
        if k.endswith("_input_ids"):
            pv = pad_token_id
        elif k.endswith("_labels"):
            pv = label_pad_token_id
        elif k.endswith("_attention_mask"):
            pv = padding_value
        else:
            raise ValueError(k)
        padded[k] = pad_sequence(to_pad, batch_first=True, padding_value=pv)
        if "prompt" in k:
            padded[k] = padded[k].flip(dims=[1])
    return padded


def pad_to_length(tensor, length, pad_value, dim=-1):
    # trl.trainer.utils.pad_to_length (TRL-0.7.4)
    if tensor.size(dim) >= length:
        return tensor
    pad_size = list(tensor.shape)
    pad_size[dim] = length - tensor.size(dim)
    return torch.cat([tensor, pad_value * torch.ones(*pad_size, dtype=tensor.dtype)], dim=dim)


def concatenated_inputs(batch, label_pad_token_id=-100, padding_value=0):
    # SPINTrainer.concatenated_inputs, decoder-only
    out = {}
    max_length = max(batch["real_input_ids"].shape[1], batch["generated_input_ids"].shape[1])
    for k in batch:
        if k.startswith("real") and isinstance(batch[k], torch.Tensor):
            pv = label_pad_token_id if "labels" in k else padding_value
            out[k.replace("real", "concatenated")] = pad_to_length(batch[k], max_length, pad_value=pv)
    for k in batch:
        if k.startswith("generated") and isinstance(batch[k], torch.Tensor):
            pv = label_pad_token_id if "labels" in k else padding_value
            ck = k.replace("generated", "concatenated")
            out[ck] = torch.cat((out[ck], pad_to_length(batch[k], max_length, pad_value=pv)), dim=0)
    return out


# ---- the hash documented in train/collate.h ------------------------------------------------------

def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# published FNV-1a 64 test vectors (Fowler/Noll/Vo reference test suite)
assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C and fnv1a64(b"foobar") == 0x85944171F73967E8


def tokens_hash(rows):
    buf = bytearray()
    for side in ("prompt", "chosen", "rejected"):
        ids, attn = rows[side], rows[side + "_attn"]
        buf += len(ids).to_bytes(8, "little", signed=True)
        for x in ids:
            buf += x.to_bytes(4, "little", signed=True)
        buf += bytes(attn)
    return "%016x" % fnv1a64(bytes(buf))


OPTS = [
    # zephyr's pad token is its EOS (id 2): the real configuration, truncation at 48/24
    {"name": "keep_end_48_24", "max_length": 48, "max_prompt_length": 24, "keep_start": False, "pad_id": 2},
    # a pad id unlike EOS and unlike concatenated_inputs' 0, so the two paddings can be told apart
    {"name": "keep_start_48_24_pad7", "max_length": 48, "max_prompt_length": 24, "keep_start": True, "pad_id": 7},
    {"name": "no_truncation_1024_512", "max_length": 1024, "max_prompt_length": 512, "keep_start": False,
     "pad_id": 2},
]


def main():
    os.makedirs(OUT, exist_ok=True)
    golden = {"source": "tests/ref/make_collate_golden.py", "bos": BOS, "eos": EOS, "files": [],
              "tokenizers": {k: v[0] for k, v in TOKENIZERS.items()},
              "opts": OPTS, "tokens": [], "batches": []}
    examples = {}
    for fname, kind, rows, fn in FILES:
        with open(os.path.join(OUT, fname), "w", encoding="utf-8") as f:
            for i, row in enumerate(rows):
                if i == 1:
                    f.write("\n")  # a blank line: skipped, but it counts for line numbers
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        exs = [with_probs(r, fn(r)) for r in rows]
        examples[fname] = exs
        golden["files"].append({"file": fname, "kind": kind, "examples": exs})

    n_tok = 0
    for tname, (_, tpath) in TOKENIZERS.items():
        if not os.path.exists(tpath):
            sys.exit("missing %s (the shared data beside the checkout)" % tpath)
        tok = Tokenizer.from_file(tpath)
        eos_id = tok.token_to_id(EOS)
        assert eos_id == 2
        hf = None
        try:
            from transformers import PreTrainedTokenizerFast
            hf = PreTrainedTokenizerFast(tokenizer_file=tpath, bos_token=BOS, eos_token=EOS)
        except Exception:
            pass
        for fname, exs in examples.items():
            for o in OPTS:
                elements, rows = [], []
                for ex in exs:
                    if hf is not None:  # tokenizer(text, add_special_tokens=False) as the collator calls it
                        for key in ("prompt", "chosen", "rejected"):
                            assert hf(ex[key], add_special_tokens=False)["input_ids"] == \
                                tok.encode(ex[key], add_special_tokens=False).ids
                    el, r = tokenize_batch_element(tok, eos_id, ex["prompt"], ex["chosen"], ex["rejected"],
                                                   o["max_length"], o["max_prompt_length"],
                                                   "keep_start" if o["keep_start"] else "keep_end")
                    r["hash"] = tokens_hash(r)
                    elements.append(el)
                    rows.append(r)
                golden["tokens"].append({"tokenizer": tname, "file": fname, "opts": o["name"], "rows": rows})
                n_tok += len(rows)
                # the whole file as one batch, and (SPIN) the first two examples as another
                batches = [list(range(len(exs)))] + ([[0, 1]] if fname == "collate_spin.jsonl" else [])
                for idx in batches:
                    batch = collate([elements[i] for i in idx], o["pad_id"])
                    cat = concatenated_inputs(batch)
                    ids, mask, labels = (cat["concatenated_input_ids"], cat["concatenated_attention_mask"],
                                         cat["concatenated_labels"])
                    golden["batches"].append({
                        "tokenizer": tname, "file": fname, "opts": o["name"], "examples": idx,
                        "len": ids.shape[1], "ids": ids.tolist(), "key_mask": mask.tolist(),
                        "labels": labels.tolist(),
                        "n_response": (labels != -100).sum(-1).tolist()})

    path = os.path.join(OUT, "collate_golden.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("wrote %s: %d files, %d token rows, %d batches (%d bytes)" %
          (path, len(FILES), n_tok, len(golden["batches"]), os.path.getsize(path)))


if __name__ == "__main__":
    main()
