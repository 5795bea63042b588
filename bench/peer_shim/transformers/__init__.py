"""The part of `transformers` that llama.cpp's convert_hf_to_gguf.py uses for a Qwen3 checkpoint,
answered by cairn instead, for bench/peer_llamacpp.sh on a machine whose only Python packages are
Debian's (Debian has no transformers).

convert_hf_to_gguf.py asks transformers for two things:
  - AutoConfig.from_pretrained(dir): when it raises, the script reads config.json itself, which is
    what we want, so this one always raises.
  - AutoTokenizer.from_pretrained(dir): the vocabulary (tokenizer.json's model.vocab plus its
    added_tokens), the added tokens' flags, and encode/decode. encode and decode run cairn's own
    tokenizer (`cairn tokenize` / `cairn detokenize`, $CAIRN_BIN), which tests/text checks against
    HF tokenizers. The script hashes encode() of a fixed text to name the pre-tokenizer; a wrong
    encoding gives an unknown hash and the script stops, so a conversion that succeeds has also
    checked our encoding of that text.
Nothing else of transformers is provided; anything else the script reaches for fails loudly.
"""
import json
import os
import subprocess
import tempfile

__version__ = "0.0-cairn-shim"


class AutoConfig:
    @staticmethod
    def from_pretrained(path, **kwargs):
        raise OSError("cairn shim: no AutoConfig; read config.json")


class _AddedToken:
    def __init__(self, t):
        self.content = t["content"]
        self.special = bool(t.get("special", False))
        self.normalized = bool(t.get("normalized", False))


def _cairn():
    return os.environ.get("CAIRN_BIN", "cairn")


class _Tokenizer:
    def __init__(self, path):
        self.path = str(path)
        with open(os.path.join(self.path, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        self.vocab = dict(tj["model"]["vocab"])
        added = tj.get("added_tokens", [])
        for t in added:
            self.vocab[t["content"]] = t["id"]
        self._added = {t["content"]: t["id"] for t in added}
        self.added_tokens_decoder = {t["id"]: _AddedToken(t) for t in added}

    def get_vocab(self):
        return dict(self.vocab)

    def get_added_vocab(self):
        return dict(self._added)

    def encode(self, text, add_special_tokens=True, **kwargs):
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
            f.write(text)
            name = f.name
        try:
            cmd = [_cairn(), "tokenize", self.path, "--text-file", name]
            if add_special_tokens:
                cmd.append("--add-special")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        finally:
            os.unlink(name)
        return json.loads(out)

    def decode(self, ids, **kwargs):
        if not ids:
            return ""
        cmd = [_cairn(), "detokenize", self.path, "--ids", ",".join(str(i) for i in ids)]
        return subprocess.run(cmd, check=True, capture_output=True).stdout.decode("utf-8")


class AutoTokenizer:
    @staticmethod
    def from_pretrained(path, **kwargs):
        return _Tokenizer(path)
