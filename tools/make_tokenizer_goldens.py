#!/usr/bin/env python3
"""Makes the tokenizer goldens in tests/text/golden/ with HF `tokenizers` and `transformers`
(run on the GPU machine, which has both), and times HF tokenizers on the benchmark text.

Inputs: a folder with <name>/tokenizer.json(.xz) and <name>/tokenizer_config.json for each of the
seven tokenizers (tests/text/fetch_tokenizers.sh fetches them; copy into .devcarry/tokenizers).
Outputs in OUT:
  tok_strings.jsonl      one test string per line: {"t": text}, or {"b": hex bytes, "t": text} where
                         the bytes are invalid UTF-8 and text = bytes.decode("utf-8", "replace")
  tok_<name>.jsonl       line 1: header {"name", "pre", "post", "tf_pre", "tf_post"} (what
                         add_special adds around the ids); then one line per string, same order:
                         {"ids": tokenizers encode(add_special_tokens=False),
                          "ids_s": only when encode(add_special_tokens=True) != pre + ids + post,
                          "tf": only when transformers' ids differ from "ids",
                          "tf_s": only when transformers' add_special ids != tf_pre + (tf or ids) + tf_post,
                          "d"/"ds": transformers decode(pre + ids + post, skip_special_tokens=False/True),
                                    only when different from the text,
                          "kd"/"kds": tokenizers' own decode, only when it differs from "d"/"ds"}
                         then lines {"r": random ids, "d", "ds"} testing decode of arbitrary ids.
  speed.json             HF tokenizers on bench/tokenizer_speed_text.py's text (Qwen3).

usage: python3 tools/make_tokenizer_goldens.py TOKDIR OUT [--speed-only] [--n-strings 2100]
"""
import json
import lzma
import os
import random
import shutil
import sys
import tempfile
import time

NAMES = ["qwen3", "llama3", "llama3_1", "llama2", "gemma3", "deepseek_v3", "gptoss"]

# ---- test strings -------------------------------------------------------------------------------

LANG = {
    "en": "The quick brown fox jumps over the lazy dog. I'm sure it's fine, isn't it? They've gone; we'll see. DON'T SHOUT. Hello world".split(" "),
    "de": "Größenordnung Übermäßig Straße Fußgängerübergänge schön grün Äpfel".split(),
    "fr": "Ça va très bien, l'été dernier où nous étions à Paris — « bonjour »".split(),
    "es": "¿Dónde está la biblioteca? ¡Qué año tan difícil! niño pingüino".split(),
    "vi": "Tiếng Việt có dấu: người, được, những, không, một".split(),
    "zh": "我们 你好 世界 模型 推理 服务器 中文 分词 测试 数据 今天 天气 很好 学习 计算机 语言 人工智能 龍 鑰匙".split(),
    "ja": "これは テスト です 日本語 の 文章 を 書きます カタカナ ひらがな 東京 ｶﾀｶﾅ ﾃｽﾄ".split(),
    "ko": "안녕하세요 세계 한국어 토크나이저 테스트 입니다 서울".split(),
    "ru": "Привет мир это тест русский язык Ёлка ЁЖ объём".split(),
    "uk": "Привіт світ їжак ґанок".split(),
    "ar": "مرحبا بالعالم هذا اختبار اللغة العربية ١٢٣ ٤٥".split(),
    "he": "שלום עולם זה מבחן".split(),
    "hi": "नमस्ते दुनिया यह परीक्षण है हिंदी भाषा क्षत्रिय".split(),
    "bn": "আমি বাংলায় গান গাই".split(),
    "ta": "வணக்கம் உலகம் தமிழ்".split(),
    "th": "สวัสดี ชาวโลก นี่คือ การทดสอบ ภาษาไทย".split(),
    "el": "Γειά σου Κόσμε ΣΟΦΙΑ σοφός".split(),
    "am": "ሰላም ዓለም".split(),
    "ka": "გამარჯობა მსოფლიო".split(),
    "my": "မင်္ဂလာပါ".split(),
}
EMOJI = ["😀", "👍", "👍🏻", "👍🏽", "👍🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🏴‍☠️", "❤️", "❤", "🇯🇵", "🇺🇸", "🇩🇪",
         "1️⃣", "#️⃣", "🤖", "✨", "🧑‍🤝‍🧑", "👁️‍🗨️", "🫠", "🥲", "☺️", "⚠️", "™", "©"]
CODE = [
    "def f(x):\n    return x + 1\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "const x = {a: 1, 'b': [2, 3], \"c\": null};",
    "<div class=\"x\">Hello &amp; <b>bye</b></div>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares",
    "fn main() -> Result<(), Box<dyn Error>> { let v: Vec<u8> = vec![]; Ok(()) }",
    "$ ls -la /usr/bin | grep -E '^-rwx' > out.txt 2>&1 && echo ok",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}",
    "    \n        indented\n\t\tmixed tabs\n",
    "a=b&&c||d;e!=f;g<<=2;h>>>=1;i**=3;j//=4",
    "// TODO: fix this\n/* block\n comment */",
    "@decorator\nclass Foo(Bar, metaclass=Meta):\n    pass",
]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<bos>", "<eos>", "<pad>",
            "<start_of_turn>", "<end_of_turn>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_3|>",
            "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜tool▁sep｜>",
            "<|start|>", "<|message|>", "<|channel|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>",
            "<think>", "</think>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<unused5>", "<unused6241>",
            "<mask>", "[multimodal]", "<start_of_image>", "<0x41>", "<0x0A>", "<|vision_start|>", "<|startoftext|>"]
LOOKALIKES = ["<|im_start", "<|im_start|", "< |im_start|>", "<<|im_end|>>", "<|IM_START|>", "<|im_start |>",
              "[INST]", "[/INST]", "<<SYS>>", "<s >", "</ s>", "<start_of_turn", "<|eot_id", "|>", "<|",
              "<｜User", "<think >", "</think", "<tool_call >", "<|im_start|>|>", "<im_start>", "<unused>",
              "<0x4G>", "<0x>", "<|reserved_special_token_|>"]
WS = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000", "\u2009", "\u200b",
      "\u2028", "\u000b", "\u000c", "\u0085", " " * 17, "\n" * 9, "\t \t \n"]
MISC = ["e\u0301", "é", "A\u030a", "Å", "ﬁ", "ﬀ", "①", "Ⅻ", "㎏", "ｆｕｌｌｗｉｄｔｈ", "Ａ１", "\u1100\u1161\u11a8",
        "\u200d", "\u200e", "\u200f", "\ufeff", "\ufffd", "\u0000", "\u0001", "\u001f", "\u007f", "İstanbul", "ǅ",
        "ß", "ẞ", "Ω", "Ω", "Å", "K", "x\u0308", "ٰ", "\U0001F600\u200d", "\U00010348", "\U0001D400", "\U000E0001",
        "'s", "'S", "'re", "'ll", "n't", "’s", "I'M", "You'VE", "o'clock", "rock 'n' roll"]


def rand_unicode(r):
    blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f),
              (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f), (0x2190, 0x23ff), (0x3040, 0x30ff),
              (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xff00, 0xffef), (0x1f300, 0x1faff), (0x10000, 0x1007f),
              (0x20000, 0x2a6df)]
    out = []
    for _ in range(r.randint(1, 30)):
        a, b = r.choice(blocks)
        c = r.randint(a, b)
        if 0xd800 <= c <= 0xdfff:
            continue
        out.append(chr(c))
    return "".join(out)


def number(r):
    k = r.random()
    if k < 0.3:
        return str(r.randint(0, 10 ** r.randint(1, 15)))
    if k < 0.5:
        return "%.*f" % (r.randint(1, 6), r.uniform(-1e4, 1e4))
    if k < 0.6:
        return "{:,}".format(r.randint(1000, 10 ** 12))
    if k < 0.7:
        return "%04d-%02d-%02d %02d:%02d" % (r.randint(1900, 2100), r.randint(1, 12), r.randint(1, 28), r.randint(0, 23), r.randint(0, 59))
    if k < 0.8:
        return "+1 (%03d) %03d-%04d" % (r.randint(0, 999), r.randint(0, 999), r.randint(0, 9999))
    if k < 0.9:
        return "v%d.%d.%d" % (r.randint(0, 20), r.randint(0, 99), r.randint(0, 999))
    return "".join(r.choice("0123456789") for _ in range(r.randint(1, 40)))


def words(r, lang=None, n=None):
    lang = lang or r.choice(list(LANG))
    ws = LANG[lang]
    sep = "" if lang in ("zh", "ja", "th") and r.random() < 0.6 else " "
    return sep.join(r.choice(ws) for _ in range(n or r.randint(1, 12)))


def piece(r):
    k = r.random()
    if k < 0.35:
        return words(r)
    if k < 0.45:
        return r.choice(CODE)
    if k < 0.55:
        return "".join(r.choice(EMOJI) for _ in range(r.randint(1, 4)))
    if k < 0.65:
        return r.choice(WS)
    if k < 0.75:
        return number(r)
    if k < 0.82:
        return r.choice(SPECIALS)
    if k < 0.87:
        return r.choice(LOOKALIKES)
    if k < 0.94:
        return r.choice(MISC)
    return rand_unicode(r)


def make_strings(n_total, seed=1234):
    """Returns a list of (text, raw_bytes_or_None)."""
    r = random.Random(seed)
    out = []
    fixed = ["", " ", "a", "  a", "a  ", "\n", "Hello", " Hello", "Hello world", "hello  world", "HELLO",
             "a" * 3000, " " * 1000, "\n" * 200, "\t" * 50 + "x", "ab" * 700, "1" * 500, "你" * 400, "😀" * 100,
             "a\u0301" * 50, "  \n  \n  ", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
             "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
             "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
             "<s>[INST] Hi [/INST]", "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>",
             "<|start|>user<|message|>Hi<|end|><|start|>assistant", "<think>\nhmm\n</think>\n\nOk",
             "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"]
    fixed += [m for m in MISC] + [s for s in SPECIALS] + [s for s in LOOKALIKES] + [w for w in WS] + [e for e in EMOJI]
    fixed += [c for c in CODE]
    for lang in LANG:
        fixed.append(" ".join(LANG[lang]))
    for s in fixed:
        out.append((s, None))
    # chat-markup lookalike conversations
    for _ in range(120):
        sp = r.choice(SPECIALS)
        out.append((sp + r.choice(["user", "system", "assistant", "model"]) + r.choice(["\n", " ", ""]) + words(r) +
                    r.choice(SPECIALS) + r.choice(["\n", "", "\n\n"]), None))
    # invalid UTF-8 byte strings
    bad = [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\x80\x80", b"\xf4\x90\x80\x80",
           b"\xe0\x80\xaf", b"\xfe\xfe\xff", b"\xc3", b"\xf8\x88\x80\x80\x80"]
    for i in range(120):
        parts = []
        for _ in range(r.randint(1, 5)):
            parts.append(piece(r).encode("utf-8") if r.random() < 0.6 else r.choice(bad))
        if i % 3 == 0:
            parts.append(bytes(r.randint(0, 255) for _ in range(r.randint(1, 12))))
        raw = b"".join(parts)
        try:
            raw.decode("utf-8")
            raw += b"\xff"
        except UnicodeDecodeError:
            pass
        out.append((raw.decode("utf-8", "replace"), raw))
    while len(out) < n_total:
        k = r.random()
        if k < 0.5:
            s = "".join(piece(r) + (r.choice(WS) if r.random() < 0.4 else "") for _ in range(r.randint(1, 8)))
        elif k < 0.7:
            s = words(r, n=r.randint(5, 40))
        elif k < 0.8:
            s = " ".join(number(r) for _ in range(r.randint(1, 6)))
        elif k < 0.9:
            s = r.choice(CODE) + r.choice(WS) + r.choice(CODE)
        else:
            s = rand_unicode(r) + piece(r)
        out.append((s[:1500], None))
    return out

# ---- HF runs ------------------------------------------------------------------------------------


def stage(tokdir, name):
    """Copies (and un-xz's) one tokenizer into a temp dir that AutoTokenizer can load."""
    src = os.path.join(tokdir, name)
    dst = tempfile.mkdtemp(prefix="tok_" + name)
    for f in os.listdir(src):
        p = os.path.join(src, f)
        if f.endswith(".xz"):
            with lzma.open(p) as i, open(os.path.join(dst, f[:-3]), "wb") as o:
                shutil.copyfileobj(i, o)
        else:
            shutil.copy(p, dst)
    return dst


def wrap(full, inner):
    """Finds pre/post with full == pre + inner + post; None if it is not of that form."""
    n = len(inner)
    for a in range(len(full) - n + 1):
        if full[a:a + n] == inner:
            return full[:a], full[a + n:]
    return None


def golden_one(tokdir, name, strings, out_dir, seed):
    from tokenizers import Tokenizer
    import transformers
    d = stage(tokdir, name)
    tk = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    try:
        tf = transformers.AutoTokenizer.from_pretrained(d)
    except Exception as e:  # keep going with tokenizers alone
        print("transformers failed for", name, repr(e)[:300])
        tf = None
    probe = "hello world"
    pi = tk.encode(probe, add_special_tokens=False).ids
    pre, post = wrap(tk.encode(probe, add_special_tokens=True).ids, pi)
    hdr = {"name": name, "pre": pre, "post": post, "vocab": tk.get_vocab_size(with_added_tokens=True)}
    if tf is not None:
        ti = tf(probe, add_special_tokens=False)["input_ids"]
        hdr["tf_pre"], hdr["tf_post"] = wrap(tf(probe, add_special_tokens=True)["input_ids"], ti)
        hdr["tf_class"] = type(tf).__name__
        hdr["tf_cleanup"] = bool(getattr(tf, "clean_up_tokenization_spaces", False))
    stats = {"tf_ids_diff": 0, "tf_s_diff": 0, "ids_s_diff": 0, "kd_diff": 0}
    lines = [json.dumps(hdr, ensure_ascii=False)]
    for text, _raw in strings:
        ids = tk.encode(text, add_special_tokens=False).ids
        ids_s = tk.encode(text, add_special_tokens=True).ids
        rec = {"ids": ids}
        if ids_s != pre + ids + post:
            rec["ids_s"] = ids_s
            stats["ids_s_diff"] += 1
        full = pre + ids + post
        if tf is not None:
            t_ids = tf(text, add_special_tokens=False)["input_ids"]
            t_s = tf(text, add_special_tokens=True)["input_ids"]
            if t_ids != ids:
                rec["tf"] = t_ids
                stats["tf_ids_diff"] += 1
            if t_s != hdr["tf_pre"] + t_ids + hdr["tf_post"]:
                rec["tf_s"] = t_s
                stats["tf_s_diff"] += 1
            dd = tf.decode(full, skip_special_tokens=False)
            ds = tf.decode(full, skip_special_tokens=True)
        else:
            dd = tk.decode(full, skip_special_tokens=False)
            ds = tk.decode(full, skip_special_tokens=True)
        kd = tk.decode(full, skip_special_tokens=False)
        kds = tk.decode(full, skip_special_tokens=True)
        if dd != text:
            rec["d"] = dd
        if ds != text:
            rec["ds"] = ds
        if kd != dd:
            rec["kd"] = kd
            stats["kd_diff"] += 1
        if kds != ds:
            rec["kds"] = kds
        lines.append(json.dumps(rec, ensure_ascii=False))
    # decoding arbitrary ids: byte-fallback pieces, partial UTF-8, specials in the middle
    r = random.Random(seed)
    V = hdr["vocab"]
    specials = sorted(set(pre + post))
    added = [tk.token_to_id(s) for s in ["<|im_start|>", "<|im_end|>", "<s>", "</s>", "<bos>", "<eos>", "<|eot_id|>",
                                         "<｜User｜>", "<|start|>", "<think>", "<unk>", "<mask>"]]
    added = [a for a in added if a is not None] + specials
    low = list(range(0, min(V, 600)))
    for i in range(300):
        n = r.randint(1, 24)
        ids = []
        for _ in range(n):
            k = r.random()
            if k < 0.45:
                ids.append(r.choice(low))
            elif k < 0.85:
                ids.append(r.randrange(V))
            elif added:
                ids.append(r.choice(added))
        if tf is not None:
            dd, ds = tf.decode(ids, skip_special_tokens=False), tf.decode(ids, skip_special_tokens=True)
        else:
            dd, ds = tk.decode(ids, skip_special_tokens=False), tk.decode(ids, skip_special_tokens=True)
        rec = {"r": ids, "d": dd, "ds": ds}
        kd = tk.decode(ids, skip_special_tokens=False)
        if kd != dd:
            rec["kd"] = kd
        lines.append(json.dumps(rec, ensure_ascii=False))
    with open(os.path.join(out_dir, "tok_%s.jsonl" % name), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(name, hdr, stats, flush=True)
    shutil.rmtree(d)


def speed(tokdir, out_dir, repo):
    sys.path.insert(0, os.path.join(repo, "bench"))
    import tokenizer_speed_text as tst
    from tokenizers import Tokenizer
    import tokenizers
    d = stage(tokdir, "qwen3")
    tk = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    text = tst.make_text(10.0, 1)
    docs = tst.split_docs(text)
    nbytes = sum(len(x.encode()) for x in docs)
    res = {"bytes": nbytes, "docs": len(docs), "cpu_count": os.cpu_count(), "tokenizers": tokenizers.__version__,
           "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS", "")}
    try:
        res["cpu"] = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except Exception:
        pass
    best = None
    n_tok = 0
    for _ in range(2):
        t0 = time.perf_counter()
        n_tok = 0
        for x in docs:
            n_tok += len(tk.encode(x, add_special_tokens=False).ids)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    res["encode_loop_s"] = best
    res["encode_loop_MBps"] = nbytes / best / 1e6
    res["tokens"] = n_tok
    t0 = time.perf_counter()
    tk.encode_batch(docs, add_special_tokens=False)
    dt = time.perf_counter() - t0
    res["encode_batch_s"] = dt
    res["encode_batch_MBps"] = nbytes / dt / 1e6
    name = "speed.json" if not res["RAYON_NUM_THREADS"] else "speed_rayon%s.json" % res["RAYON_NUM_THREADS"]
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(res, f, indent=1)
    print("speed", res, flush=True)
    shutil.rmtree(d)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    tokdir, out_dir = sys.argv[1], sys.argv[2]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    n = int(sys.argv[sys.argv.index("--n-strings") + 1]) if "--n-strings" in sys.argv else 2100
    os.makedirs(out_dir, exist_ok=True)
    if "--speed-only" not in sys.argv:
        strings = make_strings(n)
        with open(os.path.join(out_dir, "tok_strings.jsonl"), "w", encoding="utf-8") as f:
            for text, raw in strings:
                f.write(json.dumps({"b": raw.hex(), "t": text} if raw is not None else {"t": text}, ensure_ascii=False) + "\n")
        extra = sorted(x for x in os.listdir(tokdir) if x not in NAMES and os.path.isdir(os.path.join(tokdir, x)))
        for i, name in enumerate(NAMES + extra):
            if os.path.isdir(os.path.join(tokdir, name)):
                try:
                    golden_one(tokdir, name, strings, out_dir, 99 + i)
                except Exception as e:  # one broken tokenizer must not lose the others
                    print("golden failed for", name, repr(e)[:500], flush=True)
    speed(tokdir, out_dir, repo)


if __name__ == "__main__":
    main()
