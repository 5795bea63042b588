#!/usr/bin/env python3
"""Writes small synthetic tokenizer.json files that exercise the parts of the HF pipeline the seven
real tokenizers do not use (Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, the five
Split behaviours and invert, NFKC/NFD/Lowercase/Strip/StripAccents/Replace-regex normalizers,
added tokens with lstrip/rstrip/single_word/normalized, unk/fuse_unk, byte_fallback,
continuing_subword_prefix/end_of_word_suffix, Roberta/Bert/Template post-processors, Metaspace/
Strip/Replace/WordPiece/ByteFallback decoders). A tiny BPE trainer here makes vocab and merges;
tools/make_tokenizer_goldens.py then records what HF tokenizers does with them.

usage: python3 tools/make_synth_tokenizers.py OUTDIR   (writes OUTDIR/synth_*/tokenizer.json)
"""
import json
import os
import sys
from collections import Counter

CORPUS = ("the quick brown fox jumps over the lazy dog and the other dogs run there then "
          "tokenizer tokens token testing tested test hello world wordy words worded "
          "über schön café naïve 東京 日本 123 4567 8 90 it's don't we're").split()


def train(words, n_merges, prefix="", suffix=""):
    seqs = []
    for w in words:
        s = [(c if i == 0 else prefix + c) for i, c in enumerate(w)]
        if suffix:
            s[-1] = s[-1] + suffix
        seqs.append(s)
    vocab = []
    for s in seqs:
        for t in s:
            if t not in vocab:
                vocab.append(t)
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for s in seqs:
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += 1
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        new = a + b[len(prefix):]
        merges.append((a, b))
        if new not in vocab:
            vocab.append(new)
        for s in seqs:
            i = 0
            while i < len(s) - 1:
                if s[i] == a and s[i + 1] == b:
                    s[i:i + 2] = [new]
                i += 1
    return vocab, merges


def added(i, content, special=True, lstrip=False, rstrip=False, normalized=False, single_word=False):
    return {"id": i, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def tokenizer(vocab, merges, specials, model_extra, normalizer, pre, post, decoder, merges_as_pairs):
    v = {}
    for t in specials:
        v.setdefault(t["content"], len(v))
    for t in vocab:
        v.setdefault(t, len(v))
    for t in specials:
        t["id"] = v[t["content"]]
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": v, "merges": [list(m) for m in merges] if merges_as_pairs else [" ".join(m) for m in merges]}
    model.update(model_extra)
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": specials,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post, "decoder": decoder, "model": model}


def main(out):
    words_meta = ["▁" + w for w in CORPUS]
    v1, m1 = train(words_meta + CORPUS, 120)
    v1 += [c for c in "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-<>[]" if c not in v1]
    byte_toks = ["<0x%02X>" % b for b in range(256)]
    tks = {}
    tks["synth_meta"] = tokenizer(
        v1, m1,
        [added(0, "<unk>"), added(0, "<s>"), added(0, "</s>"), added(0, "<mask>", lstrip=True),
         added(0, "[SEP]", rstrip=True), added(0, "wordy", special=False, normalized=True, single_word=True),
         added(0, "XyZ", special=False, normalized=True)],
        {"unk_token": "<unk>", "fuse_unk": False},
        {"type": "Lowercase"},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True},
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                                 {"SpecialToken": {"id": "</s>", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True},
        False)
    tks["synth_fallback"] = tokenizer(
        v1 + byte_toks, m1,
        [added(0, "<unk>"), added(0, "<s>"), added(0, "</s>")],
        {"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True},
        {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                                             {"type": "Strip", "strip_left": True, "strip_right": True},
                                             {"type": "Prepend", "prepend": "▁"},
                                             {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        None,
        {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1], "trim_offsets": True, "add_prefix_space": False},
        {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
                                          {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        True)
    v3, m3 = train(CORPUS, 150, prefix="##")
    v3 += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-" if c not in v3]
    v3 += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789" if "##" + c not in v3]
    tks["synth_split"] = tokenizer(
        v3, m3,
        [added(0, "[UNK]"), added(0, "[CLS]"), added(0, "[SEP]"), added(0, "[MASK]", lstrip=True, rstrip=True)],
        {"unk_token": "[UNK]", "continuing_subword_prefix": "##", "fuse_unk": True},
        {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]},
        {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "Isolated"},
            {"type": "Digits", "individual_digits": True},
            {"type": "Split", "pattern": {"String": "o"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Split", "pattern": {"Regex": "[kq]"}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"Regex": "e+"}, "behavior": "Contiguous", "invert": False}]},
        {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]},
        {"type": "WordPiece", "prefix": "##", "cleanup": True},
        False)
    v4, m4 = train(CORPUS, 100, suffix="</w>")
    v4 += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-" if c not in v4]
    v4 += [c + "</w>" for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-" if c + "</w>" not in v4]
    tks["synth_ws"] = tokenizer(
        v4, m4,
        [added(0, "<unk>"), added(0, "<|x|>", special=True), added(0, " sp ", special=False, normalized=False)],
        {"unk_token": "<unk>", "end_of_word_suffix": "</w>", "fuse_unk": False},
        {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
        {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
            {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}+"}, "behavior": "Isolated", "invert": True},
            {"type": "Whitespace"}]},
        None,
        {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"Regex": "</w>"}, "content": " "},
                                          {"type": "Strip", "content": " ", "start": 0, "stop": 1}]},
        False)
    for name, tk in tks.items():
        os.makedirs(os.path.join(out, name), exist_ok=True)
        with open(os.path.join(out, name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tk, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1])
