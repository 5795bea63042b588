// POST /v1/embeddings with the official `openai` client and raw HTTP, on a real model served with
// --runner pooling (CAIRN_TEST_MODEL: run_server_model.sh's tiny Qwen3 with the real tokenizer):
// the SDK's default (base64) and float formats agree bit for bit, vectors are unit length, a batch
// equals its inputs run alone, token-id inputs equal their text, Matryoshka `dimensions` is the
// normalised prefix, usage counts the tokens; hostile inputs answer 400 with a reason; a client
// that leaves mid-batch and concurrent batches leave the KV cache at baseline (/metrics); the
// generation routes are refused on an embedder, and /v1/embeddings on a generator.
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { check, request, startServer, summary } from './lib.mjs';

const MODEL = process.env.CAIRN_TEST_MODEL || `${process.env.BUILD || 'build'}/server-tiny-qwen3`;
const ARGS = (process.env.LOAD_ARGS || '--backend cpu --threads 2').split(' ').filter(Boolean);
const CTX = 256;

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
// the float format writes each float32 in the fewest digits that read back as that float32
const sameF32 = (a, b) => a.length === b.length && a.every((x, i) => Math.fround(x) === Math.fround(b[i]));
const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

async function kvBlocks(port) {
  const r = await request(port, 'GET', '/metrics');
  const get = (s) => Number((r.body.match(new RegExp(`cairn_kv_blocks\\{state="${s}"\\} (\\d+)`)) || [])[1]);
  return { used: get('used'), cached: get('cached') };
}

async function waitKvBaseline(port, what) {
  let kv;
  for (let i = 0; i < 100; i++) {
    kv = await kvBlocks(port);
    if (kv.used === 0 && kv.cached === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  check(kv.used === 0 && kv.cached === 0, `${what}: KV back to baseline (no block used or cached)`, kv);
}

// no sanitizer report or CHECK in a server's log (BUILD=build-asan runs this suite under ASan/UBSan);
// called after stop(), so LeakSanitizer's exit report is in too
function checkClean(srv, what) {
  const err = srv.stderr();
  check(!/AddressSanitizer|LeakSanitizer|runtime error:|CHECK failed/.test(err), `${what}: no sanitizer report / CHECK in the server's log`,
    (err.match(/.*(AddressSanitizer|LeakSanitizer|runtime error:|CHECK failed).*/) || [''])[0]);
}

async function embed(port, body) {
  const r = await request(port, 'POST', '/v1/embeddings', body);
  return r;
}

let refFirst = null;
const texts0 = () => 'hello world';

async function main() {
  const srv = await startServer([MODEL, '--runner', 'pooling', '--max-model-len', String(CTX), ...ARGS]);
  const port = srv.port;
  const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const name = (await request(port, 'GET', '/v1/models')).json.data[0].id;
  try {
    // ---- the SDK: base64 by default, decoded by the client; float on request ----
    const texts = ['hello world', 'a', 'The quick brown fox jumps over the lazy dog. '.repeat(4)];
    const b64 = await client.embeddings.create({ model: name, input: texts });
    const flt = await client.embeddings.create({ model: name, input: texts, encoding_format: 'float' });
    check(b64.data.length === 3 && flt.data.length === 3, 'three embeddings', b64.data.length);
    check(b64.object === 'list' && b64.data[0].object === 'embedding' && b64.model === name, 'OpenAI shape', b64);
    const d = flt.data[0].embedding.length;
    refFirst = flt.data[0].embedding;
    check(d === 64, 'width is the hidden size', d);
    for (let i = 0; i < 3; i++) {
      check(flt.data[i].index === i, `index ${i}`);
      check(sameF32(Array.from(b64.data[i].embedding), flt.data[i].embedding), `input ${i}: base64 and float formats are the same float32s`);
      check(Math.abs(norm(flt.data[i].embedding) - 1) < 1e-5, `input ${i}: unit length`, norm(flt.data[i].embedding));
    }
    // raw base64 is little-endian float32
    const raw = await embed(port, { input: texts[0], encoding_format: 'base64' });
    const bytes = Buffer.from(raw.json.data[0].embedding, 'base64');
    const le = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(4 * i));
    check(sameF32(le, flt.data[0].embedding), 'raw base64 = little-endian float32 of the float answer');

    // ---- usage: every input's tokens (the tokenizer's own special tokens included) ----
    let want = 0;
    const ids = [];
    for (const t of texts) {
      const tk = await request(port, 'POST', '/tokenize', { prompt: t, add_special_tokens: true });
      ids.push(tk.json.tokens);
      want += tk.json.tokens.length;
    }
    check(flt.usage.prompt_tokens === want && flt.usage.total_tokens === want, 'usage counts the input tokens', [flt.usage, want]);

    // ---- a batch equals each input alone; token ids equal their text ----
    for (let i = 0; i < 3; i++) {
      const solo = await client.embeddings.create({ model: name, input: texts[i], encoding_format: 'float' });
      check(same(solo.data[0].embedding, flt.data[i].embedding), `input ${i}: batched = alone (cpu rows are batch-invariant)`);
    }
    const byIds = await client.embeddings.create({ model: name, input: ids, encoding_format: 'float' });
    for (let i = 0; i < 3; i++) check(same(byIds.data[i].embedding, flt.data[i].embedding), `input ${i}: token ids = text`);
    const oneIds = await client.embeddings.create({ model: name, input: ids[1], encoding_format: 'float' });
    check(oneIds.data.length === 1 && same(oneIds.data[0].embedding, flt.data[1].embedding), 'one token-id array is one input');

    // ---- Matryoshka: the first k dimensions, normalised again ----
    for (const k of [1, 16, 63]) {
      const m = await client.embeddings.create({ model: name, input: texts[0], dimensions: k, encoding_format: 'float' });
      const v = m.data[0].embedding;
      const pre = flt.data[0].embedding.slice(0, k), n = norm(pre);
      check(v.length === k, `dimensions ${k}: width`, v.length);
      check(maxDiff(v, pre.map((x) => x / n)) < 1e-6, `dimensions ${k}: the normalised prefix`, maxDiff(v, pre.map((x) => x / n)));
    }
    const full = await embed(port, { input: texts[0], dimensions: d });
    check(full.status === 200 && same(full.json.data[0].embedding, flt.data[0].embedding), 'dimensions = hidden size is the plain vector');

    // ---- hostile input: 400 with a reason, nothing left behind ----
    const long = Array.from({ length: CTX + 1 }, (_, i) => 100 + i);
    const bad = [
      [{}, /'input' is required/],
      [{ input: null }, /'input' is required/],
      [{ input: '' }, /empty string/],
      [{ input: [] }, /empty array/],
      [{ input: ['ok', ''] }, /input\[1\]' is an empty string/],
      [{ input: [[1, 2], []] }, /empty token array/],
      [{ input: 42 }, /must be a string/],
      [{ input: { text: 'x' } }, /must be a string/],
      [{ input: [1.5] }, /must be a string|token id/],
      [{ input: [[1, 'a']] }, /token id/],
      [{ input: [['a']] }, /token id/],
      [{ input: [true] }, /must be a string/],
      [{ input: [-1] }, /token id/],
      [{ input: [1e9] }, /token id/],
      [{ input: long }, new RegExp(`maximum context length is ${CTX} tokens, however 'input' has ${CTX + 1} tokens`)],
      [{ input: ['ok', long] }, /'input\[1\]' has 257 tokens/],
      [{ input: Array(10000).fill('x') }, /10000 items; at most 2048/],
      [{ input: 'word '.repeat(200000) }, /maximum context length is 256 tokens, however 'input' has \d+ tokens/],
      [{ input: [1, 'a'] }, /token id/],
      [{ input: [[1, 2], 'ok', 3] }, /input\[2\]' must be a string or an array of token ids/],
      [{ input: 'x', dimensions: 0 }, /between 1 and 64/],
      [{ input: 'x', dimensions: -3 }, /between 1 and 64/],
      [{ input: 'x', dimensions: 65 }, /between 1 and 64/],
      [{ input: 'x', dimensions: 1e12 }, /between 1 and 64/],
      [{ input: 'x', dimensions: 99999999999999999999999 }, /dimensions/],
      [{ input: 'x', dimensions: '8' }, /must be an integer/],
      [{ input: 'x', dimensions: 8.5 }, /must be an integer/],
      [{ input: 'x', encoding_format: 'bf16' }, /'float' or 'base64'/],
      [{ input: 'x', encoding_format: 1 }, /encoding_format/],
      [{ input: 'x', user: 7 }, /user/],
      [{ input: 'x', truncate_prompt_tokens: 5 }, /'truncate_prompt_tokens' is not a field/],
    ];
    for (const [body, re] of bad) {
      const r = await embed(port, body);
      const what = JSON.stringify(body).slice(0, 70);
      check(r.status === 400 && re.test(r.json?.error?.message || ''), `400 for ${what}`, [r.status, r.json?.error?.message]);
    }
    const nf = await embed(port, { input: 'x', model: 'other-model' });
    check(nf.status === 404, 'unknown model: 404', nf.status);
    for (const body of ['{"input": ', 'not json', '[1,2]']) {
      const r = await request(port, 'POST', '/v1/embeddings', body);
      check(r.status === 400, `malformed body ${body}: 400`, r.status);
    }
    for (const [route, body] of [['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }],
      ['/v1/completions', { prompt: 'hi' }], ['/v1/messages', { max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }],
      ['/v1/responses', { input: 'hi', store: false }], ['/v1/messages/count_tokens', { messages: [{ role: 'user', content: 'hi' }] }]]) {
      const g = await request(port, 'POST', route, body);
      check(g.status === 400 && /served for embeddings/.test(g.body), `${route} on an embedder: 400`, g.body.slice(0, 200));
    }
    const health = await request(port, 'GET', '/health');
    const models = await request(port, 'GET', '/v1/models');
    check(health.json?.endpoints === 'embeddings' && models.json?.data[0].endpoints === 'embeddings', '/health and /v1/models say embeddings', [health.json, models.json]);
    await waitKvBaseline(port, 'after the hostile cases');

    // ---- concurrency: batches at once, then the cache is back to baseline ----
    const many = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      client.embeddings.create({ model: name, input: Array.from({ length: 20 }, (_, k) => `item ${i} ${k} ` + 'w '.repeat(k)), encoding_format: 'float' })));
    const one = await client.embeddings.create({ model: name, input: 'item 3 7 ' + 'w '.repeat(7), encoding_format: 'float' });
    check(many.every((m) => m.data.length === 20), 'concurrent batches complete');
    check(same(many[3].data[7].embedding, one.data[0].embedding), 'an input of a concurrent batch = alone');
    await waitKvBaseline(port, 'after concurrent batches');

    // ---- a client that leaves mid-batch: the rest of its inputs are cancelled ----
    const big = Array.from({ length: 2048 }, (_, k) => `cancelled input ${k} ` + 'z '.repeat(100));
    const ac = new AbortController();
    const p = client.embeddings.create({ model: name, input: big }, { signal: ac.signal }).catch((e) => e);
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    await p;
    await waitKvBaseline(port, 'after a client left mid-batch');
    const after = await embed(port, { input: 'still serving' });
    check(after.status === 200, 'serves after the disconnect', after.status);
  } finally {
    await srv.stop();
    checkClean(srv, 'pooling server');
  }

  // ---- auto runner: the same weights saved as a base model (no "model." in the tensor names, as
  // Qwen3-Embedding ships) are served as an embedder without a flag, with the same vectors; a
  // sentence-transformers layout that pools otherwise than the last token refuses to start ----
  const base = `${process.env.BUILD || 'build'}/tmp/embed-base`;
  fs.rmSync(base, { recursive: true, force: true });
  fs.mkdirSync(base, { recursive: true });
  for (const f of fs.readdirSync(MODEL)) if (f !== 'model.safetensors') fs.copyFileSync(path.join(MODEL, f), path.join(base, f));
  const st = fs.readFileSync(path.join(MODEL, 'model.safetensors'));
  const hlen = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + hlen).toString());
  const renamed = Object.fromEntries(Object.entries(header).map(([k, v]) => [k.startsWith('model.') ? k.slice(6) : k, v]));
  let hj = JSON.stringify(renamed);
  hj += ' '.repeat((8 - (hj.length % 8)) % 8);
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(hj.length));
  fs.writeFileSync(path.join(base, 'model.safetensors'), Buffer.concat([lenBuf, Buffer.from(hj), st.subarray(8 + hlen)]));
  const auto = await startServer([base, '--max-model-len', String(CTX), ...ARGS]);
  try {
    const r = await embed(auto.port, { input: texts0(), encoding_format: 'float' });
    check(r.status === 200 && sameF32(r.json.data[0].embedding, refFirst), 'a base-model checkpoint is an embedder by default, same vectors', r.json);
    const c = await request(auto.port, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] });
    check(c.status === 400, 'and serves no chat', c.status);
  } finally {
    await auto.stop();
    checkClean(auto, 'auto runner');
  }
  fs.writeFileSync(path.join(base, 'modules.json'), JSON.stringify([{ idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' }]));
  fs.mkdirSync(path.join(base, '1_Pooling'));
  fs.writeFileSync(path.join(base, '1_Pooling/config.json'), JSON.stringify({ word_embedding_dimension: 64, pooling_mode_mean_tokens: true, pooling_mode_lasttoken: false }));
  const refused = await startServer([base, ...ARGS]).then((s) => { s.stop(); return null; }, (e) => e.message);
  check(refused && /pooling_mode_mean_tokens/.test(refused), 'mean pooling (sentence-transformers) refuses to start, naming it', refused?.slice(-300));
  fs.writeFileSync(path.join(base, '1_Pooling/config.json'), JSON.stringify({ word_embedding_dimension: 64, pooling_mode_mean_tokens: false, pooling_mode_lasttoken: true }));
  // config.json's matryoshka_dimensions (vLLM's key) lists the only widths allowed
  const cfg = JSON.parse(fs.readFileSync(path.join(base, 'config.json')));
  fs.writeFileSync(path.join(base, 'config.json'), JSON.stringify({ ...cfg, matryoshka_dimensions: [16, 32] }));
  const lt = await startServer([base, ...ARGS]);
  try {
    const r = await embed(lt.port, { input: texts0(), encoding_format: 'float' });
    check(r.status === 200 && sameF32(r.json.data[0].embedding, refFirst), 'last-token pooling (sentence-transformers layout) serves', r.status);
    const ok16 = await embed(lt.port, { input: texts0(), dimensions: 16 });
    const bad20 = await embed(lt.port, { input: texts0(), dimensions: 20 });
    check(ok16.status === 200 && ok16.json.data[0].embedding.length === 16, 'a listed Matryoshka width', ok16.status);
    check(bad20.status === 400 && /16, 32 or 64/.test(bad20.json?.error?.message), 'an unlisted width: 400 with the list', bad20.json);
  } finally {
    await lt.stop();
    checkClean(lt, 'sentence-transformers layout');
  }

  // ---- a model not trained for Matryoshka (a Llama here) takes only its own width ----
  const llamaCfg = `${process.env.BUILD || 'build'}/tmp/embed-llama.json`;
  fs.writeFileSync(llamaCfg, JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64,
    intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16,
    max_position_embeddings: 512, rms_norm_eps: 1e-6, rope_theta: 10000, vocab_size: 151936, tie_word_embeddings: true,
    bos_token_id: 151643, eos_token_id: 151645 }));
  const llama = await startServer(['--synthetic', llamaCfg, '--tokenizer', `${process.env.BUILD || 'build'}/tokenizers/qwen3`, '--runner', 'pooling', ...ARGS]);
  try {
    const full64 = await embed(llama.port, { input: 'x', dimensions: 64 });
    const cut = await embed(llama.port, { input: 'x', dimensions: 16 });
    check(full64.status === 200, 'a Llama embedder: its own width is fine', full64.status);
    check(cut.status === 400 && /does not support 'dimensions'/.test(cut.json?.error?.message), 'a Llama embedder: dimensions refused', cut.json);
  } finally {
    await llama.stop();
    checkClean(llama, 'llama embedder');
  }

  // ---- a generation server refuses /v1/embeddings with the flag to use ----
  const gen = await startServer([MODEL, '--max-model-len', String(CTX), ...ARGS]);
  try {
    const r = await embed(gen.port, { input: 'x' });
    check(r.status === 400 && /--runner pooling/.test(r.json?.error?.message), '/v1/embeddings on a generator: 400 naming --runner pooling', r.json);
  } finally {
    await gen.stop();
    checkClean(gen, 'generation server');
  }
  return summary('embeddings');
}

main().then((rc) => process.exit(rc), (e) => { console.error(e); process.exit(1); });
