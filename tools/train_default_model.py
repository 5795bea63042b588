#!/usr/bin/env python3
"""train_default_model.py: trains cairn's built-in default model and exports it.

What: a small Qwen3ForCausalLM (hidden 384, 8 layers, 6 query / 2 KV heads of 64, SwiGLU 1024,
tied embeddings, vocab 8192: 15.7 M parameters) and its own byte-level BPE tokenizer (HF
`tokenizers`, Qwen2-style split regex, NFC), trained on the corpus of tools/build_corpus.py (the
Python 3.11 documentation, change log and standard library as Debian ships them, PSF License 2.0),
then a short instruction-style finishing pass on ChatML conversations synthesized from the same
text (loss on the assistant replies only; replies start after an empty <think></think> block, as
Qwen3 renders them with thinking off).

Phases (all on one GPU, bf16 autocast, AdamW):
  1. tokenizer: BPE on the training documents, specials <|endoftext|> <|im_start|> <|im_end|>
     (special) and <think> </think> <tool_call> </tool_call> <tool_response> </tool_response>
     (added, not special);
  2. pretraining on random 1024-token windows of the document stream (documents shuffled with the
     seed, each followed by <|endoftext|>); validation loss on the held-out documents every 250
     steps, the best weights kept; dropout 0.1 on embeddings and block outputs;
  3. finishing pass on the conversations (final weights kept; validation loss on held-out
     conversations logged);
  4. export to --out: config.json, model.safetensors (bf16), generation_config.json,
     tokenizer.json, tokenizer_config.json (chat template tools/chat_template.jinja), PROVENANCE;
  5. check: reload with transformers (float32, eager, CPU), AutoTokenizer + apply_chat_template;
     fixtures for tests into --fixtures (ref.json + logits_K.f32: chat-templated prompts, logits of
     every prompt position, greedy continuation of up to 32 tokens that stops after an eos id, by
     an argmax loop and by generate, which must agree); sample answers (greedy and sampled) into
     --samples.

Reproducible: data order, initialisation, dropout and schedule follow --seed; the number of steps
of each phase is fixed by --pretrain-steps / --sft-steps (defaults 2000 and 450, about 2 and 1.5
minutes on an H100), so a rerun repeats the run up to the run-to-run noise of GPU kernels. With a
count of 0 the script instead times the first steps and picks the count that fills
--pretrain-seconds / --sft-seconds, and writes the counts it used into PROVENANCE.

Run (GPU machine; corpus made here by tools/build_corpus.py into .devcarry/corpus):
  python3 tools/train_default_model.py --corpus .devcarry/corpus --out /tmp/default \
      --fixtures /tmp/fixtures_default --samples /tmp/samples.json
"""
import argparse
import datetime
import json
import lzma
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatml  # noqa: E402

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>",
         "</tool_response>"]
SPLIT_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def read_jsonl_xz(path):
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------------------
def train_tokenizer(texts, vocab):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, \
        processors, trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2,
                                  special_tokens=SPECIAL + ADDED,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    j = json.loads(tok.to_str())
    for t in j["added_tokens"]:
        if t["content"] in ADDED:
            t["special"] = False
    return Tokenizer.from_str(json.dumps(j))


def encode_segments(tok, segs):
    ids, mask = [], []
    for text, train in segs:
        e = tok.encode(text, add_special_tokens=False).ids
        ids += e
        mask += [1 if train else 0] * len(e)
    return ids, mask


# ------------------------------------------------------------------------------------------
def lr_at(step, total, peak, warm, floor=0.1):
    if step < warm:
        return peak * (step + 1) / warm
    p = min(1.0, (step - warm) / max(1, total - warm))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(model, lr, wd):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def lm_loss(model, x, y):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1),
                           ignore_index=-100)


def masked_loss(model, x, y):
    """Loss on the labelled positions only: the LM head runs on those rows alone."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h = model.model(input_ids=x, use_cache=False).last_hidden_state
        sel = y != -100
        logits = model.lm_head(h[sel])
    return F.cross_entropy(logits.float(), y[sel])


@torch.no_grad()
def eval_stream(model, val, T, B, dev):
    model.eval()
    n = (len(val) - 1) // T
    tot, cnt = 0.0, 0
    for s in range(0, n, B):
        idx = range(s, min(n, s + B))
        x = torch.stack([torch.from_numpy(val[i * T:i * T + T].astype(np.int64)) for i in idx])
        y = torch.stack([torch.from_numpy(val[i * T + 1:i * T + T + 1].astype(np.int64))
                         for i in idx])
        x, y = x.to(dev), y.to(dev)
        loss = lm_loss(model, x, y)
        tot += float(loss) * y.numel()
        cnt += y.numel()
    model.train()
    return tot / max(1, cnt)


def sft_batch(examples, idx, pad, maxlen, dev):
    L = min(maxlen, max(len(examples[i][0]) for i in idx))
    x = torch.full((len(idx), L), pad, dtype=torch.long)
    y = torch.full((len(idx), L), -100, dtype=torch.long)
    for r, i in enumerate(idx):
        ids, mask = examples[i]
        ids, mask = ids[:L + 1], mask[:L + 1]
        n = min(L, len(ids) - 1)
        x[r, :n] = torch.tensor(ids[:n])
        tgt = torch.tensor(ids[1:n + 1])
        m = torch.tensor(mask[1:n + 1], dtype=torch.bool)
        y[r, :n] = torch.where(m, tgt, torch.full_like(tgt, -100))
    return x.to(dev), y.to(dev)


@torch.no_grad()
def eval_sft(model, examples, pad, maxlen, dev, B=64):
    model.eval()
    tot, cnt = 0.0, 0
    for s in range(0, len(examples), B):
        x, y = sft_batch(examples, list(range(s, min(len(examples), s + B))), pad, maxlen, dev)
        n = int((y != -100).sum())
        if n:
            tot += float(masked_loss(model, x, y)) * n
            cnt += n
    model.train()
    return tot / max(1, cnt)


def timed_steps(step_fn, fixed, seconds, probe, skip):
    """Runs step_fn(step, total) for FIXED steps, or when FIXED is 0 measures steps SKIP..PROBE
    and picks the total that fills SECONDS. Returns the total used."""
    if fixed:
        for s in range(fixed):
            step_fn(s, fixed)
        return fixed
    t_start = time.time()
    t_skip = None
    s = 0
    total = None
    while True:
        if total is not None and s >= total:
            break
        step_fn(s, total or 10 ** 9)
        s += 1
        if s == skip:
            torch.cuda.synchronize()
            t_skip = time.time()
        if s == probe and total is None:
            torch.cuda.synchronize()
            per = (time.time() - t_skip) / (probe - skip)
            left = seconds - (time.time() - t_start)
            total = probe + max(0, int(left / (per * 1.06)))
            log(f"  {per * 1000:.1f} ms/step -> {total} steps")
    return total


# ------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=".devcarry/corpus")
    ap.add_argument("--out", default="models/default")
    ap.add_argument("--fixtures", default="tests/model/fixtures/default")
    ap.add_argument("--samples", default="")
    # the numeric options: each one's type is its default's
    for flag, default in (("--seed", 1234), ("--vocab", 8192), ("--hidden", 384), ("--layers", 8), ("--ffn", 1024),
                          ("--seq", 1024), ("--batch", 32), ("--lr", 2e-3), ("--dropout", 0.1),
                          ("--pretrain-steps", 2000), ("--pretrain-seconds", 230.0), ("--sft-steps", 450),
                          ("--sft-seconds", 100.0), ("--sft-lr", 3e-4)):
        ap.add_argument(flag, type=type(default), default=default)
    a = ap.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM, Qwen3Config

    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    log(f"transformers {transformers.__version__} torch {torch.__version__} "
        f"{torch.cuda.get_device_name(0)}")

    docs = read_jsonl_xz(os.path.join(a.corpus, "pretrain.jsonl.xz"))
    convs = read_jsonl_xz(os.path.join(a.corpus, "sft.jsonl.xz"))
    manifest = json.load(open(os.path.join(a.corpus, "manifest.json")))
    train_docs = [d["text"] for d in docs if d["split"] == "train"]
    val_docs = [d["text"] for d in docs if d["split"] == "val"]
    log(f"{len(train_docs)} train docs, {len(val_docs)} val docs, {len(convs)} conversations")

    # 1. tokenizer
    tok = train_tokenizer(train_docs, a.vocab)
    V = tok.get_vocab_size()
    tid = {t: tok.token_to_id(t) for t in SPECIAL + ADDED}
    eot, im_end = tid["<|endoftext|>"], tid["<|im_end|>"]
    log(f"tokenizer: vocab {V}, specials {tid}")

    # 2. token streams
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(train_docs))
    enc = tok.encode_batch([train_docs[i] for i in order], add_special_tokens=False)
    train = np.concatenate([np.array(e.ids + [eot], dtype=np.uint16) for e in enc])
    venc = tok.encode_batch(val_docs, add_special_tokens=False)
    val = np.concatenate([np.array(e.ids + [eot], dtype=np.uint16) for e in venc])
    val_bytes = sum(len(t.encode("utf-8")) for t in val_docs)
    log(f"train tokens {len(train)}, val tokens {len(val)} "
        f"({val_bytes / len(val):.2f} bytes/token)")
    train_t = torch.from_numpy(train.astype(np.int64)).to(dev)

    # 3. model
    cfg = Qwen3Config(vocab_size=V, hidden_size=a.hidden, intermediate_size=a.ffn,
                      num_hidden_layers=a.layers, num_attention_heads=a.hidden // 64,
                      num_key_value_heads=2, head_dim=64, max_position_embeddings=2048,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                      rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=eot,
                      eos_token_id=im_end, pad_token_id=eot, attention_bias=False,
                      initializer_range=0.02, use_cache=True)
    cfg.architectures = ["Qwen3ForCausalLM"]
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").to(dev)
    model.train()
    # dropout on the embeddings and on the output of every attention and MLP block (training
    # only; hooks add no weights): the corpus is small and is seen many times
    def drop(mod, inp, out):
        return F.dropout(out, p=a.dropout, training=mod.training)
    if a.dropout > 0:
        model.model.embed_tokens.register_forward_hook(drop)
        for layer in model.model.layers:
            layer.self_attn.o_proj.register_forward_hook(drop)
            layer.mlp.down_proj.register_forward_hook(drop)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters")

    # 4. pretraining
    opt = make_optimizer(model, a.lr, 0.1)
    T, B = a.seq, a.batch
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    ar = torch.arange(T + 1, device=dev)
    hist = {"pretrain": [], "pretrain_val": [], "sft_val": []}
    best = {"loss": float("inf"), "state": None, "step": -1}

    def pre_step(s, total):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(s, total, a.lr, 200)
        off = torch.randint(0, len(train) - T - 1, (B,), generator=g).to(dev)
        w = train_t[off[:, None] + ar]
        loss = lm_loss(model, w[:, :-1], w[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s % 50 == 0:
            hist["pretrain"].append((s, loss.item()))
        if (s % 250 == 0 and s > 0) or s == total - 1:
            vl = eval_stream(model, val, T, 16, dev)
            hist["pretrain_val"].append((s, vl))
            if vl < best["loss"]:
                best.update(loss=vl, step=s,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
            log(f"  pretrain step {s} loss {float(loss):.4f} val {vl:.4f} "
                f"lr {opt.param_groups[0]['lr']:.2e}")

    log("pretraining")
    pre_total = timed_steps(pre_step, a.pretrain_steps, a.pretrain_seconds, 40, 10)
    model.load_state_dict(best["state"])
    pre_best = dict(loss=best["loss"], step=best["step"])
    log(f"pretraining done: {pre_total} steps, best val {pre_best['loss']:.4f} at step "
        f"{pre_best['step']} ({pre_best['loss'] / math.log(2) * len(val) / val_bytes:.3f} "
        f"bits/byte)")
    del train_t

    # 5. finishing pass
    sft_train, sft_val = [], []
    for c in convs:
        ex = encode_segments(tok, chatml.render_segments(c["messages"]))
        (sft_val if c["split"] == "val" else sft_train).append(ex)
    log(f"conversations: {len(sft_train)} train, {len(sft_val)} val, "
        f"{sum(sum(m) for _, m in sft_train)} supervised tokens")
    sft_val_before = eval_sft(model, sft_val, eot, 768, dev)
    log(f"sft val loss before finishing: {sft_val_before:.4f}")
    opt = make_optimizer(model, a.sft_lr, 0.0)
    sg = random.Random(a.seed + 1)
    sft_last = {"loss": sft_val_before}

    def sft_step(s, total):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(s, total, a.sft_lr, 30)
        idx = [sg.randrange(len(sft_train)) for _ in range(64)]
        x, y = sft_batch(sft_train, idx, eot, 768, dev)
        loss = masked_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (s % 100 == 0 and s > 0) or s == total - 1:
            vl = eval_sft(model, sft_val, eot, 768, dev)
            hist["sft_val"].append((s, vl))
            sft_last["loss"] = vl
            log(f"  sft step {s} loss {float(loss):.4f} val {vl:.4f}")

    log("finishing pass")
    sft_total = timed_steps(sft_step, a.sft_steps, a.sft_seconds, 25, 5)
    # the final weights are kept: the validation conversations ask about documents the model never
    # saw, so their loss mostly measures knowledge and flattens early, while the reply format and
    # the hand-written exchanges keep improving
    sft_best = dict(loss=sft_last["loss"], step=sft_total - 1)
    log(f"finishing done: {sft_total} steps, final val {sft_best['loss']:.4f}")

    # 6. export
    os.makedirs(a.out, exist_ok=True)
    for fn in os.listdir(a.out):
        os.remove(os.path.join(a.out, fn))
    model.eval()
    model.to(torch.bfloat16).save_pretrained(a.out)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot,
                   "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                   "transformers_version": transformers.__version__}, f, indent=2)
        f.write("\n")
    tok.save(os.path.join(a.out, "tokenizer.json"))
    template = chatml.load_template()
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
            "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
            "add_bos_token": False, "add_eos_token": False, "model_max_length": 2048,
            "clean_up_tokenization_spaces": False, "split_special_tokens": False,
            "chat_template": template}
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    for extra in ("chat_template.jinja",):
        if os.path.exists(os.path.join(a.out, extra)):
            os.remove(os.path.join(a.out, extra))
    log(f"exported: {sorted(os.listdir(a.out))}")

    # 7. checks and fixtures with transformers, float32 eager on the CPU
    from transformers import AutoTokenizer
    torch.set_num_threads(8)
    m = AutoModelForCausalLM.from_pretrained(a.out, dtype=torch.float32,
                                             attn_implementation="eager").eval()
    ht = None
    for cls in ("PreTrainedTokenizerFast", "TokenizersBackend", "Qwen2Tokenizer"):
        tcfg["tokenizer_class"] = cls
        with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
            json.dump(tcfg, f, indent=2, ensure_ascii=False)
            f.write("\n")
        try:
            ht = AutoTokenizer.from_pretrained(a.out)
            probe = "def f(x):\n    return x  # <|im_start|>user\nHi<|im_end|>\n<think>\n\n</think>\n\n"
            if ht(probe, add_special_tokens=False)["input_ids"] != \
                    tok.encode(probe, add_special_tokens=False).ids:
                raise RuntimeError("encodes differently from tokenizer.json")
            break
        except Exception as e:  # noqa: BLE001 -- try the next class name
            log(f"AutoTokenizer with tokenizer_class {cls}: {e!r}")
            ht = None
    if ht is None:
        raise RuntimeError("AutoTokenizer cannot load the exported tokenizer")
    log(f"AutoTokenizer: {type(ht).__name__}, eos {ht.eos_token!r}, pad {ht.pad_token!r}")
    # the template renders the training conversations exactly as the training did
    bad = 0
    for c in convs[:300]:
        want = "".join(s for s, _ in chatml.render_segments(c["messages"]))
        got = ht.apply_chat_template(c["messages"], tokenize=False)
        ids_joint = ht(got, add_special_tokens=False)["input_ids"]
        ids_seg, _ = encode_segments(tok, chatml.render_segments(c["messages"]))
        if got != want or ids_joint != ids_seg:
            bad += 1
    log(f"template/tokenizer agreement on 300 training conversations: {300 - bad}/300")
    tool_demo = ht.apply_chat_template(
        [{"role": "user", "content": "What time is it?"},
         {"role": "assistant", "content": "", "tool_calls": [
             {"type": "function", "function": {"name": "now", "arguments": {"tz": "UTC"}}}]},
         {"role": "tool", "content": "12:00"}],
        tools=[{"type": "function", "function": {"name": "now", "description": "Current time",
                                                 "parameters": {"type": "object",
                                                                "properties": {}}}}],
        tokenize=False, add_generation_prompt=True, enable_thinking=False)
    log("tool template demo:\n" + tool_demo)

    eos_ids = {im_end, eot}

    @torch.no_grad()
    def greedy(ids, n):
        seq = list(ids)
        margins = []
        for _ in range(n):
            lg = m(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].float()
            top = torch.topk(lg, 2)
            margins.append(float(top.values[0] - top.values[1]))
            seq.append(int(top.indices[0]))
            if seq[-1] in eos_ids:
                break
        return seq[len(ids):], margins

    fx_prompts = [
        [{"role": "user", "content": "What does the Python function `json.dumps` do?"}],
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "What is the `collections` module for?"}],
        [{"role": "user", "content": "Hello"}],
        [{"role": "user", "content": "Explain the term generator."}],
        [{"role": "user", "content": "What does `os.path.join` do?"},
         {"role": "assistant", "content": "It joins one or more path components."},
         {"role": "user", "content": "Show an example of using `os.path.join`."}],
    ]
    os.makedirs(a.fixtures, exist_ok=True)
    ref = {"model_dir": "models/default", "prompts": [], "prompt_texts": [], "messages": [],
           "logits_files": [], "greedy": [], "greedy_min_margin": [], "greedy_max_tokens": 32,
           "eos_token_ids": sorted(eos_ids), "vocab": V, "arch": "Qwen3ForCausalLM",
           "transformers": transformers.__version__, "torch": torch.__version__,
           "notes": ["prompts rendered with apply_chat_template(add_generation_prompt=True, "
                     "enable_thinking=False); greedy = argmax continuation of up to 32 tokens "
                     "from float32 eager transformers on the saved bf16 weights, stopping after "
                     "(and including) the first eos id; model.generate(do_sample=False) agrees",
                     "greedy[k] is the continuation of prompts[k]; logits_k.f32 holds the "
                     "logits of every position of prompts[k], float32 LE [n_tok, vocab]"]}
    for k, msgs in enumerate(fx_prompts):
        text = ht.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                      enable_thinking=False)
        assert text.endswith(chatml.GEN_PROMPT), text
        ids = ht(text, add_special_tokens=False)["input_ids"]
        assert ids == tok.encode(text, add_special_tokens=False).ids
        with torch.no_grad():
            lg = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
        fn = f"logits_{k}.f32"
        lg.numpy().astype("<f4").tofile(os.path.join(a.fixtures, fn))
        gids, margins = greedy(ids, 32)
        with torch.no_grad():
            gen = m.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                             dtype=torch.long),
                             do_sample=False, max_new_tokens=32, eos_token_id=sorted(eos_ids),
                             pad_token_id=eot, repetition_penalty=1.0)
        gen = [int(v) for v in gen[0, len(ids):]]
        if gen != gids:
            log(f"WARNING fixture {k}: generate {gen} != argmax loop {gids}")
        ref["prompts"].append(ids)
        ref["prompt_texts"].append(text)
        ref["messages"].append(msgs)
        ref["logits_files"].append(fn)
        ref["greedy"].append(gids)
        ref["greedy_min_margin"].append(min(margins))
        log(f"fixture {k}: {len(ids)} prompt tokens, greedy {len(gids)} tokens, min margin "
            f"{min(margins):.4f}: {ht.decode(gids)!r}")
    ref["greedy_prompt"] = 0
    with open(os.path.join(a.fixtures, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # 8. sample answers
    questions = [
        "What does the Python function `json.dumps` do?",
        "What is the `collections` module for?",
        "Explain the term generator.",
        "How do I read a file line by line?",
        "What is a list comprehension?",
        "Who are you?",
        "Show an example of using `re.sub`.",
        "What does `os.listdir` do?",
        "Hello",
        "What arguments does `json.dumps` take?",
    ]
    samples = []
    torch.manual_seed(a.seed)
    for q in questions:
        msgs = [{"role": "user", "content": q}]
        ids = ht.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                     enable_thinking=False)
        ids = ht(ids, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        am = torch.ones_like(x)
        with torch.no_grad():
            gr = m.generate(x, attention_mask=am, do_sample=False, max_new_tokens=160,
                            eos_token_id=sorted(eos_ids), pad_token_id=eot,
                            repetition_penalty=1.0)
            sp = m.generate(x, attention_mask=am, do_sample=True, temperature=0.7, top_p=0.8,
                            top_k=20, repetition_penalty=1.0, max_new_tokens=160,
                            eos_token_id=sorted(eos_ids), pad_token_id=eot)
        s = {"prompt": q,
             "greedy": ht.decode(gr[0, len(ids):], skip_special_tokens=True),
             "sampled": ht.decode(sp[0, len(ids):], skip_special_tokens=True)}
        samples.append(s)
        log(f"Q: {q}\n  greedy: {s['greedy']!r}\n  sampled: {s['sampled']!r}")

    # 9. provenance
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    prov = f"""cairn default model
===================
What: a small Qwen3ForCausalLM ({n_params / 1e6:.2f} M parameters: hidden {a.hidden}, {a.layers} layers,
{a.hidden // 64} query heads and 2 KV heads of 64, SwiGLU {a.ffn}, tied embeddings, rope theta 10000,
trained on {a.seq}-token windows) with its own byte-level BPE tokenizer (vocab {V}), made by the cairn
project so that `cairn serve` works with no download. It knows a little about Python and little else;
its answers are often wrong.

Trained by: tools/train_default_model.py (corpus: tools/build_corpus.py), seed {a.seed},
  python3 tools/train_default_model.py --seed {a.seed} --pretrain-steps {pre_total} --sft-steps {sft_total}
on one {torch.cuda.get_device_name(0)}, transformers {transformers.__version__}, torch {torch.__version__}, {now}.
Pretraining: {pre_total} steps of {B} x {a.seq} tokens (AdamW, peak lr {a.lr}, cosine, weight decay 0.1,
  dropout {a.dropout}),
  best validation loss {pre_best['loss']:.4f} nats/token ({pre_best['loss'] / math.log(2) * len(val) / val_bytes:.3f} bits/byte) at step {pre_best['step']}.
Finishing pass: {sft_total} steps of 64 ChatML conversations (lr {a.sft_lr}), loss on assistant replies only;
  validation loss on held-out conversations {sft_val_before:.4f} before, {sft_best['loss']:.4f} after (final weights kept).

Training text (Debian 12 packages; all redistributable):
  - Python 3.11 documentation sources (python3.11-doc): PSF License Version 2; code examples in the
    documentation are also under the Zero-Clause BSD license.
  - Python 3.11 change log NEWS (python3.11): PSF License Version 2.
  - Python 3.11 standard library sources, without test suites (libpython3.11-stdlib): PSF License
    Version 2 (some modules carry further permissive notices, listed in the Python documentation's
    "History and License" page).
  Corpus: {manifest['pretrain_docs']} documents, {manifest['pretrain_chars']['train']} characters for training,
  {manifest['pretrain_chars']['val']} held out; {manifest['sft_conversations']['train']} synthesized conversations
  (questions about functions, classes, modules, glossary terms, FAQ entries and sections, answered
  with the documentation's text or docstrings; a few hand-written ones about the model itself).
  corpus sha256: {json.dumps(manifest['files'])}

Chat format: ChatML as Qwen3 (tokenizer_config.json chat_template); with thinking off the reply
follows '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n'; eos <|im_end|> (and <|endoftext|>).
The model weights are released under the same terms as the text they were trained on (PSF License
Version 2).
"""
    with open(os.path.join(a.out, "PROVENANCE"), "w") as f:
        f.write(prov)
    info = {"n_params": n_params, "vocab": V, "pretrain_steps": pre_total,
            "pretrain_best": pre_best, "val_tokens": int(len(val)), "val_bytes": val_bytes,
            "sft_steps": sft_total, "sft_val_before": sft_val_before, "sft_best": sft_best,
            "history": hist, "samples": samples, "template_agreement": 300 - bad,
            "tool_demo": tool_demo, "date": now}
    if a.samples:
        with open(a.samples, "w") as f:
            json.dump(info, f, indent=1, ensure_ascii=False)
    log("done")


if __name__ == "__main__":
    main()
