"""Stand-in for the sentencepiece package where it is not installed, for bench/peer_llamacpp.sh.

llama.cpp's converter tries a SentencePiece vocabulary first for Qwen models: it imports this
module, then looks for tokenizer.model and falls back to the BPE vocabulary when that file is
missing (Qwen3 ships none). Only the import has to succeed; any real use fails loudly."""


class SentencePieceProcessor:
    def __init__(self, *args, **kwargs):
        raise ImportError("sentencepiece is not installed (cairn's stand-in: tokenizer.model needs the real package)")
