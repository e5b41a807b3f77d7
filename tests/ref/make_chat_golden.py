#!/usr/bin/env python3
"""Golden strings for the chat templates of models/chat_template.c.

Renders a fixed set of conversations through the real Jinja source of each supported template
with jinja2, in the environment transformers uses for apply_chat_template (an
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension, a
raise_exception global, and bos_token / eos_token passed as variables), and writes the expected
strings (or the expected error) as JSON to tests/data/chat/chat_golden.json. It also writes small
tokenizer_config.json files used by the recognition tests.

The "instruction" template has no Jinja source: it is the Python expression of uclaml/SPIN's
spin/generate.py, `"### Instruction: " + prompt + "\\n\\n### Response: "`, evaluated here.

Usage: pip install jinja2 && python3 tests/ref/make_chat_golden.py   (needs nothing else)
"""

import json
import os
import sys

import jinja2
from jinja2.exceptions import TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "chat")

# ---- the Jinja sources, exactly as the tokenizer_config.json files hold them -------------------

# uclaml/SPIN@a12ba80:spin/alignment/data.py:13 (DEFAULT_CHAT_TEMPLATE; also the zephyr
# tokenizer_config). Note the two spaces before `+ message['content']` in the assistant branch.
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
    "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

# HuggingFaceTB/SmolLM2-*-Instruct tokenizer_config.json (commit e4f7834 "chat template" of
# SmolLM2-1.7B-Instruct; the 135M and 360M Instruct models carry the same string).
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' "
    "}}{% endif %}"
)

# meta-llama/Llama-2-*-chat-hf tokenizer_config.json. Inside the Jinja string literals the
# newlines are written as the two characters backslash, n (the JSON file has "\\n"); Jinja's
# string-literal parser turns them into newlines.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == "
    "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != "
    "false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}"
)

# mistralai/Mistral-7B-Instruct-v0.1 tokenizer_config.json (the template it shipped with in 2023;
# v0.2 dropped the trailing ' ' after eos_token, later revisions added system-message handling).
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 "
    "% 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' "
    "+ message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
    "message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}"
)

TEMPLATES = {"zephyr": ZEPHYR, "chatml": CHATML, "llama-2": LLAMA2, "mistral": MISTRAL}

# The special tokens each template's model uses, and a second, made-up pair that shows the
# renderer takes them from its arguments.
TOKENS = {
    "zephyr": [("<s>", "</s>")],
    "chatml": [("<|im_start|>", "<|im_end|>")],
    "llama-2": [("<s>", "</s>")],
    "mistral": [("<s>", "</s>")],
    "instruction": [("<s>", "</s>")],
}
for v in TOKENS.values():
    v.append(("<BOS>", "<EOS>"))


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    ("user_only", [m("user", "Hi?")]),
    ("spin_prompt_empty_system", [m("system", ""), m("user", "Hi?")]),
    ("system_user", [m("system", "You are terse."), m("user", "What is 2+2?")]),
    ("multi_turn", [m("user", "Hello"), m("assistant", "Hi! How can I help?"), m("user", "Tell a joke.")]),
    (
        "system_multi_turn_ends_assistant",
        [
            m("system", "Answer in French."),
            m("user", "Good morning"),
            m("assistant", "Bonjour"),
            m("user", "Thank you"),
            m("assistant", "Merci"),
        ],
    ),
    ("empty_contents", [m("user", ""), m("assistant", "")]),
    (
        "unicode",
        [
            m("user", "Gr\u00fc\u00dfe, \u4e16\u754c! \U0001f680 na\u00efve caf\u00e9 \u2014 \u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac"),
            m("assistant", "\u041f\u0440\u0438\u0432\u0435\u0442 \U0001f44b \u0645\u0631\u062d\u0628\u0627"),
        ],
    ),
    ("ascii_whitespace", [m("user", "  padded\twith spaces and newlines\n\n"), m("assistant", "\t tabbed reply \n")]),
    (
        "unicode_whitespace",
        [
            m("user", "\u3000ideographic space, nbsp\u00a0"),
            m("assistant", "\u2003em space, line separator\u2028\u0085"),
            m("user", "\u001fx\u001c"),
        ],
    ),
    ("whitespace_only_user", [m("user", " \n\t ")]),
    ("template_syntax_in_content", [m("user", "{{ not jinja }} {% raw %} <|user|> [INST] <<SYS>>"), m("assistant", "'quotes' \"and\" \\backslash")]),
    ("system_then_empty_user", [m("system", "Be nice."), m("user", "")]),
    ("system_with_spaces", [m("system", "  spaced system  \n"), m("user", "  q  ")]),
    (
        "long_dialogue",
        [
            m("user", "one"),
            m("assistant", "two"),
            m("user", "three"),
            m("assistant", "four"),
            m("user", "five"),
            m("assistant", "six"),
            m("user", "seven"),
        ],
    ),
    ("unicode_prompt", [m("user", "\u00bfQu\u00e9 tal? \u65e5\u672c\u8a9e\u306e\u30c6\u30b9\u30c8 \U0001f600")]),
    ("empty_prompt", [m("user", "")]),
    ("multiline_prompt", [m("user", "Line one.\n\nLine two.\n")]),
    ("newlines_inside", [m("system", "line 1\nline 2"), m("user", "a\n\nb"), m("assistant", "c\r\nd")]),
    # Error cases (for some templates)
    ("assistant_first", [m("assistant", "I start.")]),
    ("two_users", [m("user", "a"), m("user", "b")]),
    ("system_only", [m("system", "S")]),
    ("system_in_middle", [m("user", "a"), m("system", "late system"), m("user", "b")]),
    ("system_after_first_turn", [m("user", "a"), m("assistant", "b"), m("system", "late"), m("user", "c")]),
    ("empty_conversation", []),
]

# Cases the real template renders but the C renderer refuses on purpose (docs/chat_templates.md):
# llama-2 silently drops a system message at an odd position after the first.
C_STRICTER = {
    ("llama-2", "system_in_middle"): "llama-2 can place a system message only first",
}


def make_env():
    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env


def render_jinja(env, src, messages, add_gen, bos, eos):
    try:
        out = env.from_string(src).render(
            messages=messages, add_generation_prompt=add_gen, bos_token=bos, eos_token=eos
        )
        return {"expected": out}
    except UndefinedError as e:
        return {"error": str(e), "error_kind": "undefined"}
    except TemplateError as e:
        return {"error": str(e), "error_kind": "raise_exception"}


def render_instruction(messages):
    # uclaml/SPIN generate.py: "### Instruction: " + real[0]['content'] + "\n\n### Response: ".
    # The C renderer accepts exactly one user message.
    if len(messages) != 1 or messages[0]["role"] != "user":
        return {"error": "instruction takes exactly one user message", "error_kind": "c_policy"}
    return {"expected": "### Instruction: " + messages[0]["content"] + "\n\n### Response: "}


def main():
    env = make_env()
    out = {
        "generator": "tests/ref/make_chat_golden.py",
        "jinja2_version": jinja2.__version__,
        "environment": "ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, "
        "extensions=[loopcontrols]) + raise_exception, as transformers' apply_chat_template",
        "conversations": [{"name": n, "messages": msgs} for n, msgs in CONVERSATIONS],
        "templates": {},
    }
    counts = {}
    for name in ["zephyr", "chatml", "llama-2", "mistral", "instruction"]:
        src = TEMPLATES.get(name)
        cases = []
        for conv_name, msgs in CONVERSATIONS:
            for bos, eos in TOKENS[name]:
                for add_gen in (False, True):
                    if src is None:
                        r = render_instruction(msgs)
                    else:
                        r = render_jinja(env, src, msgs, add_gen, bos, eos)
                    if (name, conv_name) in C_STRICTER and "expected" in r:
                        r = {
                            "error": C_STRICTER[(name, conv_name)],
                            "error_kind": "c_policy",
                            "jinja_output": r["expected"],
                        }
                    case = {
                        "conversation": conv_name,
                        "add_generation_prompt": add_gen,
                        "bos_token": bos,
                        "eos_token": eos,
                    }
                    case.update(r)
                    cases.append(case)
        entry = {"cases": cases}
        if src is not None:
            entry["jinja"] = src
        out["templates"][name] = entry
        ok = sum(1 for c in cases if "expected" in c)
        counts[name] = (len(cases), ok, len(cases) - ok)

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "chat_golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")

    # tokenizer_config.json files for the recognition tests: the exact template text of each
    # model (bos/eos as plain strings, and as AddedToken objects as Llama-2's file has them), and
    # near misses that must not be recognised.
    configs = {
        "tokenizer_config_zephyr.json": {"bos_token": "<s>", "eos_token": "</s>", "chat_template": ZEPHYR},
        "tokenizer_config_chatml.json": {
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "chat_template": CHATML,
        },
        "tokenizer_config_llama2.json": {
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False},
            "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False},
            "chat_template": LLAMA2,
        },
        "tokenizer_config_mistral.json": {"bos_token": "<s>", "eos_token": "</s>", "chat_template": MISTRAL},
        "tokenizer_config_named_list.json": {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "chat_template": [{"name": "tool_use", "template": "{{ x }}"}, {"name": "default", "template": MISTRAL}],
        },
        "tokenizer_config_near_miss.json": {"eos_token": "</s>", "chat_template": CHATML + " "},
        "tokenizer_config_no_template.json": {"bos_token": "<s>", "eos_token": "</s>"},
    }
    for fname, cfg in configs.items():
        with open(os.path.join(OUT, fname), "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=2)
            f.write("\n")

    for name, (n, ok, err) in counts.items():
        print(f"{name:12s} {n:3d} cases: {ok:3d} rendered, {err:3d} errors", file=sys.stderr)


if __name__ == "__main__":
    main()
