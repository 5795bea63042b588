// Load test: 64 concurrent streaming clients at temperature 0 must produce exactly what each
// prompt gives when served alone; then 32 clients that disconnect mid-stream must leave KV usage
// at its baseline (read from /metrics). Prints p50/p99 TTFT and total throughput. On a real
// engine, --max-queue counts only what waits beyond the free running slots: with --max-running 64
// and --max-queue 32, 96 of 128 simultaneous requests are served and 32 refused (429, Retry-After).
// A chunked upload over --max-body-bytes beside running streams is answered 413 as soon as it
// passes the limit, and the streams finish.
// Fake model by default; CAIRN_TEST_MODEL=DIR for a real checkpoint (LOAD_TOKENS to size it).
import http from 'node:http';
import net from 'node:net';
import { check, summary, startServer, metrics, sleep } from './lib.mjs';

const N = Number(process.env.LOAD_CLIENTS || 64);
const TOKENS = Number(process.env.LOAD_TOKENS || 64);
const model = process.env.CAIRN_TEST_MODEL;

// One streaming chat request over raw HTTP; abortAfter: destroy the socket after that many chunks.
function stream(port, prompt, maxTokens, abortAfter = 0) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens, temperature: 0, stream: true,
      chat_template_kwargs: { enable_thinking: false } });
    const t0 = performance.now();
    let ttft = 0, text = '', chunks = 0, buf = '', finish = null;
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.on('data', (d) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i); buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
          const j = JSON.parse(ev.slice(6));
          const c = j.choices?.[0];
          if (c?.delta?.content) { if (!ttft) ttft = performance.now() - t0; text += c.delta.content; chunks++; }
          if (c?.finish_reason) finish = c.finish_reason;
          if (abortAfter && chunks >= abortAfter) { req.destroy(); resolve({ aborted: true }); return; }
        }
      });
      res.on('end', () => resolve({ text, ttft, ms: performance.now() - t0, finish }));
      res.on('error', () => resolve({ aborted: true }));
    });
    req.on('error', () => resolve({ aborted: true }));
    req.write(body);
    req.end();
  });
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };

function chat(port, prompt, maxTokens) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens, ignore_eos: true,
      chat_template_kwargs: { enable_thinking: false } });
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve({ status: res.statusCode, retry: res.headers['retry-after'] }));
    });
    req.on('error', () => resolve({ status: 0 }));
    req.end(body);
  });
}

async function queueBeyondFreeSlots() {
  const q = await startServer([model, ...(process.env.LOAD_ARGS || '').split(' ').filter(Boolean), '--max-running', '64', '--max-queue', '32']);
  const rs = await Promise.all(Array.from({ length: 128 }, (_, i) => chat(q.port, `queue ${i}`, TOKENS)));
  const ok = rs.filter((r) => r.status === 200).length, busy = rs.filter((r) => r.status === 429 && Number(r.retry) > 0).length;
  check(ok === 96 && busy === 32, '--max-queue 32 with 64 free slots: 96 of 128 served, 32 refused with Retry-After', { ok, busy });
  await q.stop();
}

// A chunked upload of 17 MB against a 16 MB limit while streams run, its end never sent: the 413
// comes as soon as the running total passes the limit (waiting for the body's end would never
// answer), the connection closes soon after (the rest is read and dropped for a moment first, so
// that the answer is not lost to a reset), and the streams finish untouched.
// Resolves {status, ms (to the answer), closedMs}.
function oversizedUpload(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const t0 = performance.now();
    let got = '', status = 0, ms = 0, done = false;
    const finish = () => { if (done) return; done = true; s.destroy(); resolve({ status, ms, closedMs: performance.now() - t0 }); };
    s.on('data', (d) => {
      got += d;
      const m = !status && got.match(/^HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n/);
      if (m) { status = Number(m[1]); ms = performance.now() - t0; }
    });
    s.on('close', finish);
    s.on('error', () => { if (status) finish(); });   // a write after the server's close: the answer is in
    setTimeout(finish, 20000);
    s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
    const mb = Buffer.alloc(1 << 20, 'y');
    let i = 0;
    const pump = () => {
      for (; i < 17 && !done && !status; i++)
        if (!s.write(`100000\r\n`) | !s.write(mb) | !s.write('\r\n')) { i++; s.once('drain', pump); return; }
    };
    pump();
  });
}

async function oversizedUploadUnderLoad() {
  const srv = await startServer([...(model ? [model, ...(process.env.LOAD_ARGS || '').split(' ').filter(Boolean)] : ['--fake']),
                                 '--max-body-bytes', '16M']);
  const streams = Array.from({ length: 8 }, (_, i) => stream(srv.port, `stream beside an upload ${i}`, model ? TOKENS : 3000));
  await sleep(200);
  const up = await oversizedUpload(srv.port);
  const rs = await Promise.all(streams);
  console.error(`load: 17 MB chunked upload (never ended) over a 16 MB limit beside 8 streams: ${up.status} after ${(up.ms / 1000).toFixed(2)} s, closed after ${(up.closedMs / 1000).toFixed(2)} s`);
  check(up.status === 413 && up.ms < 10000, 'oversized chunked upload under load: 413 within 10 s', up);
  check(up.closedMs < up.ms + 5000, 'oversized chunked upload: connection closed after the 413', up);
  check(rs.every((r) => r.finish && !r.aborted), 'streams beside the oversized upload all finished', rs.map((r) => r.finish || 'aborted'));
  await sleep(300);
  const m = await metrics(srv.port);
  check(m['cairn_requests_total{endpoint="/v1/chat/completions",status="413"}'] === 1, 'the oversized upload counted as 413',
        Object.entries(m).filter(([k]) => k.startsWith('cairn_requests_total')));
  const ex = await srv.stop();
  check(ex.code === 0, 'clean exit (oversized upload server)');
  check(!/AddressSanitizer|LeakSanitizer|runtime error:|CHECK failed/.test(srv.stderr()), 'no sanitizer report (oversized upload server)');
}

async function main() {
  const srv = await startServer(model ? [model, ...(process.env.LOAD_ARGS || '').split(' ').filter(Boolean)] : ['--fake']);
  const prompts = Array.from({ length: N }, (_, i) => `load test prompt number ${i}: tell me something`);
  const solo = [];
  for (const p of prompts) solo.push(await stream(srv.port, p, TOKENS));
  const base = await metrics(srv.port);
  const t0 = performance.now();
  const res = await Promise.all(prompts.map((p) => stream(srv.port, p, TOKENS)));
  const wall = (performance.now() - t0) / 1000;
  let same = 0, tokens = 0;
  for (let i = 0; i < N; i++) {
    if (res[i].text === solo[i].text && res[i].finish === solo[i].finish) same++;
    else if (same + 3 > i) console.error(`  client ${i}: concurrent <${res[i].text?.slice(0, 60)}> solo <${solo[i].text.slice(0, 60)}>`);
  }
  await sleep(300);   // request accounting runs when the connection completes, just after [DONE]
  const after = await metrics(srv.port);
  tokens = after.cairn_generated_tokens_total - base.cairn_generated_tokens_total;
  check(same === N, `${N} concurrent streams equal their solo runs`, `${same}/${N}`);
  check(res.every((r) => r.finish), 'every concurrent stream finished');
  const ttfts = res.map((r) => r.ttft);
  console.error(`load: ${N} clients x ${TOKENS} tokens: TTFT p50 ${pct(ttfts, 50).toFixed(1)} ms, p99 ${pct(ttfts, 99).toFixed(1)} ms; ` +
                `${tokens} tokens in ${wall.toFixed(2)} s = ${(tokens / wall).toFixed(0)} tok/s total`);

  // disconnects
  const kvBase = (await metrics(srv.port))['cairn_kv_blocks{state="used"}'];
  const ab = await Promise.all(Array.from({ length: 32 }, (_, i) => stream(srv.port, `abort me ${i}`, 2000, 1 + (i % 7))));
  check(ab.every((r) => r.aborted), '32 clients disconnected mid-stream');
  let m;
  for (let i = 0; i < 100; i++) { await sleep(100); m = await metrics(srv.port); if (m.cairn_running === 0 && m['cairn_kv_blocks{state="used"}'] === kvBase) break; }
  check(m.cairn_running === 0 && m.cairn_queue_depth === 0, 'nothing left running after disconnects', { running: m.cairn_running, waiting: m.cairn_queue_depth });
  check(m['cairn_kv_blocks{state="used"}'] === kvBase, 'KV usage back at baseline', { base: kvBase, now: m['cairn_kv_blocks{state="used"}'] });
  check((m['cairn_requests_total{endpoint="/v1/chat/completions",status="499"}'] || 0) >= 32, 'disconnects counted as 499');
  const ex = await srv.stop();
  check(ex.code === 0, 'clean exit');
  check(!/AddressSanitizer|LeakSanitizer|runtime error:|CHECK failed/.test(srv.stderr()), 'no sanitizer report');
  await oversizedUploadUnderLoad();
  if (model) await queueBeyondFreeSlots();
  process.exit(summary('load'));
}

main().catch((e) => { console.error('FAIL exception', e); process.exit(1); });
