#!/usr/bin/env python3
"""Writes the tokenizer benchmark text: about 10 MB of mixed text (English prose, code, CJK,
Cyrillic, Arabic, Hindi, Thai, emoji, numbers, whitespace runs), deterministic for a given seed,
so cairn (bench/tokenizer_speed.sh) and HF tokenizers (tools/make_tokenizer_goldens.py) time the
very same bytes. Documents are separated by a blank line; both sides encode one document per call.

usage: python3 bench/tokenizer_speed_text.py OUT.txt [--mb 10] [--seed 1]
"""
import random
import sys

WORDS = {
    "en": ("the of and to in is that it was for on are with as be at by this have from or one had "
           "not but what all were when we there can an your which their said if do will each about "
           "how up out them then she many some so these would other into has more her two like him "
           "see time could no make than first been its who now people my made over did down only way "
           "find use may water long little very after words called just where most know tokenizer "
           "server inference latency throughput batching kernel memory bandwidth").split(),
    "zh": "我们 你好 世界 模型 推理 服务器 中文 分词 测试 数据 今天 天气 很好 学习 计算机 语言 人工智能 的 是 在 了 和 有".split(),
    "ja": "これは テスト です 日本語 の 文章 を 書きます カタカナ ひらがな 東京 大学 ありがとう ございます".split(),
    "ko": "안녕하세요 세계 한국어 토크나이저 테스트 입니다 서울 감사합니다 컴퓨터".split(),
    "ru": "привет мир это тест русский язык модель сервер данные быстро медленно хорошо".split(),
    "ar": "مرحبا بالعالم هذا اختبار اللغة العربية نموذج الخادم البيانات".split(),
    "hi": "नमस्ते दुनिया यह परीक्षण है हिंदी भाषा मॉडल सर्वर".split(),
    "th": "สวัสดี ชาวโลก นี่คือ การทดสอบ ภาษาไทย แบบจำลอง".split(),
}
CODE = [
    "def {n}(x, y=None):\n    if y is None:\n        return x * 2\n    return [i ** 2 for i in range(x) if i % {k} == 0]\n",
    "static int {n}(const char *s, size_t n)\n{{\n\tfor (size_t i = 0; i < n; i++)\n\t\tif (s[i] == '\\n') return (int)i;\n\treturn -{k};\n}}\n",
    "const {n} = async (req, res) => {{\n  const body = await req.json();\n  res.status({k}).send({{ ok: true, items: body.items ?? [] }});\n}};\n",
    '{{"name": "{n}", "values": [{k}, 2.5e-3, null, true], "nested": {{"a": "b"}}}}\n',
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵", "🤖", "✨"]


def document(r):
    parts = []
    for _ in range(r.randint(3, 12)):
        kind = r.random()
        if kind < 0.45:
            ws = WORDS["en"]
            sent = " ".join(r.choice(ws) for _ in range(r.randint(5, 25)))
            parts.append(sent.capitalize() + r.choice([".", "!", "?", ",", ";"]) + " ")
        elif kind < 0.65:
            lang = r.choice(["zh", "ja", "ko", "ru", "ar", "hi", "th"])
            sep = "" if lang in ("zh", "ja", "th") else " "
            parts.append(sep.join(r.choice(WORDS[lang]) for _ in range(r.randint(4, 20))) + "。 " if lang in ("zh", "ja") else
                         sep.join(r.choice(WORDS[lang]) for _ in range(r.randint(4, 20))) + ". ")
        elif kind < 0.8:
            parts.append("\n" + r.choice(CODE).format(n="f%d" % r.randint(0, 999), k=r.randint(1, 9999)))
        elif kind < 0.9:
            parts.append("%d %.3f %s " % (r.randint(0, 10 ** r.randint(1, 9)), r.random() * 1000, r.choice(EMOJI)))
        else:
            parts.append(r.choice(["  ", "\t", "\n", "    ", "\r\n", " " * r.randint(2, 40)]))
    d = "".join(parts).strip("\n")
    while "\n\n" in d:
        d = d.replace("\n\n", "\n")
    return d


def make_text(mb=10.0, seed=1):
    r = random.Random(seed)
    docs, size = [], 0
    while size < mb * 1e6:
        d = document(r)
        docs.append(d)
        size += len(d.encode()) + 2
    return "\n\n".join(docs) + "\n\n"


def split_docs(text):
    """The unit both benchmarks encode: each document with its trailing blank line."""
    return [d + "\n\n" for d in text.split("\n\n") if d]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    mb = float(sys.argv[sys.argv.index("--mb") + 1]) if "--mb" in sys.argv else 10.0
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    with open(sys.argv[1], "w", encoding="utf-8", newline="") as f:
        f.write(make_text(mb, seed))
