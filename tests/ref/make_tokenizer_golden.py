#!/usr/bin/env python3
"""Builds the tokenizer parity fixtures in tests/data/tokenizer/ with the Hugging Face `tokenizers`
library (PyPI): the corpus, tiny trained tokenizers (committed, small) and, for every tokenizer,
the expected ids with and without special tokens and what `tokenizers` decodes them to.

    pip install tokenizers
    python3 tests/ref/make_tokenizer_golden.py [--shared ../shared]

Real tokenizers are read from <shared>/data/tokenizers/ and never copied into the repository; only
their expected ids are written (golden-<name>.json). Deterministic: rerunning gives the same files.
"""
import argparse
import json
import os
import random

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")

ZEPHYR = ("<|system|>\nYou are a friendly chatbot who always responds in the style of a pirate</s>\n"
          "<|user|>\nHow many helicopters can a human eat in one sitting?</s>\n<|assistant|>\n")


def corpus(shared):
    s = [
        "", " ", "  ", "\n", " \n", "\t", "\n\n\n", "   leading spaces", "trailing spaces   ",
        "Hello world", "Hello, world!", "hello   world", "a\tb\tc", "line one\nline two\r\nline three",
        "grabbed", " grabbed", "           grabbed", "\ttabs\t\t\t\tout here", "ax\n####\nboo",
        "The quick brown fox jumps over the lazy dog.", "I'm sure you'll see they've it's we'd",
        "DON'T SHOUT'S 'quoted' \"double\"",
        # scripts
        "Привет, мир! Как дела?", "Съешь же ещё этих мягких французских булок.",
        "你好，世界。今天天气很好。", "日本語のテキストとカタカナ、ひらがな。", "한국어 문장입니다.",
        "مرحبا بالعالم", "السلام عليكم ورحمة الله", "नमस्ते दुनिया", "हिन्दी में एक वाक्य।",
        "Ελληνικά γράμματα", "עברית מימין לשמאל", "ภาษาไทย", "café naïve façade Ångström über résumé",
        "Crème brûlée à la française, señor, São Paulo", "e\u0301 combining acute", "ﬁ ligature Ⅻ ①②③",
        "镇", "Ꙋ", "🦙", "🦙Ꙋ", "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "\u00a0nbsp\u00a0inside\u2003emspace",
        "\u200b zero width \u200d joiner", "\u2028line separator\u2029paragraph",
        # digits
        "0", "7", "42", "123456789", "3.14159265358979", "1,000,000 and 2024-01-15",
        "Call +1 (555) 012-3456 now", "x = 10**9 + 7", "٣٤٥ Arabic-Indic digits", "१२३ Devanagari digits",
        "v1.2.3-rc4", "00012300", "12345678901234567890123456789",
        # emoji
        "😀", "😀😃😄", "👍🏽 thumbs", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇫🇷🇩🇪 flags", "❤️‍🔥 heart on fire",
        "I love 🍕 and 🍣!", "🤖 robot says: beep",
        # code
        "def f(x):\n    return x ** 2\n", "int main(void) {\n\treturn 0;\n}\n",
        "for (int i = 0; i < n; i++) { a[i] += b[i]; }", "if x != None and y >= 3:\n        pass",
        "<div class=\"a\">&amp;</div>", "SELECT * FROM users WHERE id = 1;", "print('hello')  # comment",
        "    indented\n        more\n\tmixed", "https://example.com/path?q=1&r=two#frag",
        "~!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/", "a  b   c    d     e", "\r\r\n\r", "end with newline\n",
        # special tokens and templates
        ZEPHYR, "<|user|>\nHi?</s>\n<|assistant|>\n", "<|system|>\n</s>\n<|user|>\nHi?</s>\n<|assistant|>\n",
        "</s>", "<s>", "<s>Hello</s>", "Hello</s>world", " </s> ", "<unk>", "a<s>b", "<s> <s>  </s>",
        "<|endoftext|>", "text<|endoftext|>more", "<|endoftext|><|endoftext|>", " <|endoftext|> x",
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<|im_start|><|im_end|>",
        "<tool>call</tool>", "x <tool> y", "x<tool>y", "magic", "a magic word", "automagically", "magic!",
        "[MASK]", "a [MASK] b", "a[MASK]b", "<|user|>", "<|user|>hi", "émagic ü", "magic_x", "x magic",
        "x\u3000<tool>\u3000y", "a \t<tool>\n\nb", "<tool><tool>", "  [MASK]  x", "ab <|user|> cd",
        "1 <|user|>2", "don't do not stop . now , ok ? yes ! I 'm", "word</w> ##sub",
        # bytes absent from vocabularies / odd characters
        "\x00", "\x01\x02\x7f", "\u0080\u00ff", "\uffff", "\U0001f9ff", "\U000e0001 tag", "\u0378",
        "mixed 中文 and English 123 😀!", "tab\tsep\tvalues\t1\t2", "   \n   \n", " \t \n ",
    ]
    # random mixtures of the troublesome pieces (fixed seed): adjacency of scripts, spaces,
    # digits, emoji parts, ZWJ, special tokens and byte-fallback strings
    pieces = ["a", "Z", "é", "ß", "中", "я", "ب", "न", "्", "😀", "🏽", "\u200d", "\u200c", "\ufe0f", "🇫",
              " ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "0", "9", "٣", "①", "Ⅻ", "_", "'", "'s",
              "'ll", ".", "!", "<", "|", "\\", "<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_end|>", "<tool>",
              "magic", "[MASK]", "<|user|>", "\u2581", "\x00", "\u0301", "\U0001F9FF", "hello", "ing", "##",
              "</w>", "<0x41>", "12345"]
    rnd = random.Random(1234)
    for _ in range(60):
        s.append("".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 24))))
    with open(os.path.join(shared, "data", "alpaca_5000.json")) as f:
        alpaca = json.load(f)
    for r in alpaca[:80]:
        t = r["instruction"]
        if r["input"]:
            t += "\n\n" + r["input"]
        s.append(t)
        if r["output"]:
            s.append(r["output"][:400])
    for name in ("llama2", "mistral"):
        p = os.path.join(shared, "data", "tokenizers", name + "-upstream-cases.json")
        if os.path.exists(p):
            with open(p) as f:
                s += [c["text"] for c in json.load(f)]
    seen, out = set(), []
    for t in s:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def training_text(shared):
    with open(os.path.join(shared, "data", "alpaca_5000.json")) as f:
        alpaca = json.load(f)
    return [r["instruction"] + "\n" + r["input"] + "\n" + r["output"] for r in alpaca[1000:3000]]


def bytelevel_pretok():
    # SmolLM2's pre-tokenizer: digits split one by one, then the GPT-2 regex.
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


def train_bytelevel(text):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = bytelevel_pretok()
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tr = trainers.BpeTrainer(vocab_size=800, special_tokens=specials, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text, tr)
    tok.add_special_tokens([AddedToken("<tool>", lstrip=True, rstrip=True, normalized=False, special=True),
                            AddedToken("</tool>", single_word=False, normalized=False, special=True)])
    tok.add_tokens([AddedToken("magic", single_word=True, normalized=True, special=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A <|im_end|>", special_tokens=[("<|im_start|>", 1), ("<|im_end|>", 2)])
    return json.loads(tok.to_str())


def train_sentencepiece(text):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="\u2581",
                                                                                 prepend_scheme="first")])
    tr = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                             limit_alphabet=120)
    tok.train_from_iterator(text, tr)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, normalized=False, special=True)])
    tok.add_tokens([AddedToken("<|user|>", normalized=False, special=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    n = max(vocab.values()) + 1
    # byte-fallback tokens, except a few so that the unk path (fused) is exercised too
    for b in range(256):
        if b in (0x01, 0xF0):
            continue
        vocab["<0x%02X>" % b] = n
        n += 1
    # added tokens must keep ids after the model's: renumber them
    for a in j["added_tokens"]:
        if a["content"] not in vocab:
            a["id"] = n
            n += 1
        else:
            a["id"] = vocab[a["content"]]
    return j


def variants(bl, sp):
    """Other components on the same vocabularies: (name, tokenizer json)."""
    out = []

    def with_pre(base, name, pre, **model):
        j = json.loads(json.dumps(base))
        j["pre_tokenizer"] = pre
        j["model"].update(model)
        out.append((name, j))

    bytelevel_noregex = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    llama3 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
              "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
    with_pre(bl, "tiny-llama3", {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated", "invert": False},
        bytelevel_noregex]}, ignore_merges=True)
    with_pre(bl, "tiny-split-removed", {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
        bytelevel_noregex]})
    with_pre(bl, "tiny-split-prev", {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Digits", "individual_digits": False},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]})
    with_pre(bl, "tiny-split-next-invert", {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "MergedWithNext", "invert": True},
        bytelevel_noregex]})
    with_pre(bl, "tiny-split-contiguous", {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "[\\p{P}\\s]"}, "behavior": "Contiguous", "invert": False},
        bytelevel_noregex]})
    j = json.loads(json.dumps(sp))
    j["pre_tokenizer"]["prepend_scheme"] = "always"
    j["pre_tokenizer"]["split"] = False
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    out.append(("tiny-sp-always", j))
    j = json.loads(json.dumps(sp))
    j["pre_tokenizer"] = None
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        {"type": "Replace", "pattern": {"Regex": "\\t+"}, "content": "\u2581\u2581"}]}
    j["decoder"] = out[-1][1]["decoder"]
    for a in j["added_tokens"]:
        if a["content"] == "<|user|>":
            a["normalized"] = True  # matched as its normalized form "▁<|user|>"
    out.append(("tiny-sp-normalizer", j))
    return out


def train_affixes(text):
    """BPE with end_of_word_suffix (BPEDecoder) and with continuing_subword_prefix (WordPiece decoder)."""
    out = []
    tok = Tokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tr = trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]"], show_progress=False, limit_alphabet=80,
                             end_of_word_suffix="</w>")
    tok.train_from_iterator(text, tr)
    out.append(("tiny-suffix", json.loads(tok.to_str())))
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.normalizer = normalizers.Strip()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tr = trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]"], show_progress=False, limit_alphabet=80,
                             continuing_subword_prefix="##")
    tok.train_from_iterator(text, tr)
    j = json.loads(tok.to_str())
    j["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in j["model"]["merges"]]
    out.append(("tiny-prefix", j))
    return out


def golden(name, tok_json_text, source, texts):
    tok = Tokenizer.from_str(tok_json_text)
    has_post = json.loads(tok_json_text).get("post_processor") is not None
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        # decoded strings are stored only where they differ from the input text
        c = {"ids": ids}
        d = tok.decode(ids, skip_special_tokens=False)
        if d != t:
            c["decoded"] = d
        if has_post:
            ids2 = tok.encode(t, add_special_tokens=True).ids
            c["ids_special"] = ids2
            d = tok.decode(ids2, skip_special_tokens=True)
            if d != t:
                c["decoded_skip"] = d
        cases.append(c)
    with open(os.path.join(OUT, "golden-%s.json" % name), "w") as f:
        json.dump({"tokenizer": source, "post_processor": has_post, "cases": cases}, f, ensure_ascii=False,
                  separators=(",", ":"))
        f.write("\n")
    return sum(len(c["ids"]) for c in cases)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    texts = corpus(a.shared)
    with open(os.path.join(OUT, "corpus.json"), "w") as f:
        json.dump(texts, f, ensure_ascii=False, indent=0)
        f.write("\n")
    train = training_text(a.shared)
    bl = train_bytelevel(train)
    sp = train_sentencepiece(train)
    tiny = [("tiny-bytelevel", bl), ("tiny-sp", sp)] + variants(bl, sp) + train_affixes(train)
    for name, j in tiny:
        text = json.dumps(j, ensure_ascii=False, indent=1)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            f.write(text + "\n")
        n = golden(name, text, name + ".json", texts)
        print("%-24s %d strings, %d tokens" % (name, len(texts), n))
    for name in ("gpt2", "llama2", "mistral"):
        p = os.path.join(a.shared, "data", "tokenizers", name + "-tokenizer.json")
        with open(p) as f:
            n = golden(name, f.read(), "shared:" + name + "-tokenizer.json", texts)
        print("%-24s %d strings, %d tokens" % (name, len(texts), n))
        up = os.path.join(a.shared, "data", "tokenizers", name + "-upstream-cases.json")
        if os.path.exists(up):
            tok = Tokenizer.from_file(p)
            bad = [c["text"] for c in json.load(open(up)) if tok.encode(c["text"]).ids != c["ids"]]
            print("  upstream cases: %s" % ("all match" if not bad else "MISMATCH %r" % bad))


if __name__ == "__main__":
    main()
