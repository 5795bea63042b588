#!/usr/bin/env node
// check_bench.js: independent checks of `cairn bench` outputs for tests/bench/run_*.sh.
//   node check_bench.js sweep RUNS.jsonl SUMMARY.json MOCK_LOG.jsonl LABEL EXPECT_REASONING EXPECT_CONTENT
//   node check_bench.js sweep-real RUNS.jsonl SUMMARY.json LABEL      (against cairn serve)
//   node check_bench.js agentic SUMMARY.json VERDICT RESTART_VERDICT CLEAN TOTAL
//   node check_bench.js burst RUNS.jsonl SUMMARY.json SERIALIZED_LIST(e.g. "1:false,4:true")
//   node check_bench.js errors RUNS.jsonl 'null|/regex/' ...   (one pattern per line, in order)
// Statistics are recomputed here from the raw JSONL, with their own code, and compared to the
// summary that cairn wrote. Exits 1 with a message on the first mismatch.
'use strict';
const fs = require('fs');
const [cmd, ...a] = process.argv.slice(2);
const fail = (m) => { console.error('check_bench: ' + m); process.exit(1); };
const lines = (p) => fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const close = (x, y, what) => {
  if (x === null && y === null) return;
  if (typeof x !== 'number' || typeof y !== 'number' || Math.abs(x - y) > 1e-6 * Math.max(1, Math.abs(x)))
    fail(`${what}: cairn says ${x}, recomputed ${y}`);
};
function stats(xs) {
  const v = xs.filter((x) => typeof x === 'number' && isFinite(x)).sort((p, q) => p - q);
  const n = v.length;
  if (!n) return { n: 0, median: null, mean: null, stddev: null, min: null, max: null };
  const mean = v.reduce((s, x) => s + x, 0) / n;
  const median = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  const sd = n > 1 ? Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, median, mean, stddev: sd, min: v[0], max: v[n - 1] };
}
function compareStats(got, want, what) {
  if (got.n !== want.n) fail(`${what}.n: ${got.n} vs ${want.n}`);
  for (const k of ['median', 'mean', 'stddev', 'min', 'max']) close(got[k], want[k], `${what}.${k}`);
}
const FIELDS = ['url', 'model', 'label', 'mode', 'phase', 'size', 'burst_n', 'run', 'nonce', 'ttft_ms', 'total_ms',
  'decode_ms', 'prefill_tps', 'decode_tps', 'prompt_tokens', 'prompt_tokens_src', 'completion_tokens',
  'reasoning_tokens', 'cached_tokens', 'content_tokens', 'tool_calls', 'tool_calls_clean', 'start_ms', 'first_ms', 'end_ms',
  'http_status', 'error'];

if (cmd === 'sweep' || cmd === 'sweep-real') {
  // sweep-real: against a real server, which neither logs prompts nor counts tokens like the
  // client's estimate: no server-log check, prompt sizes within 25% (the chat template adds some)
  const real = cmd === 'sweep-real';
  const [runsP, sumP, logP, label, expReason, expContent] = real ? [a[0], a[1], null, a[2], 0, -1] : a;
  const runs = lines(runsP), sum = JSON.parse(fs.readFileSync(sumP, 'utf8'));
  // the size probe (max_tokens 1, not a run) also led with its own nonce
  const all = real ? null : lines(logP);
  if (!real && !all.filter((e) => e.max_tokens === 1).every((e) => /^\[[0-9a-f]{16}\] /.test(e.user_head)))
    fail('a probe without a leading nonce');
  const log = real ? null : all.filter((e) => e.max_tokens !== 1);
  for (const r of runs) for (const f of FIELDS) if (!(f in r)) fail(`field ${f} missing`);
  if (runs[0].phase !== 'warmup') fail('first run is not the warm-up');
  if (runs.some((r) => r.label !== label || r.mode !== 'sweep' || (!real && r.model !== 'mock-model')))
    fail('label/mode/model');
  // the nonce is the first thing the server saw, and every request had its own
  if (!real) {
    if (log.length !== runs.length) fail(`server saw ${log.length} requests, JSONL has ${runs.length}`);
    runs.forEach((r, i) => {
      if (!log[i].user_head.startsWith('[' + r.nonce + '] ')) fail(`request ${i}: prompt starts "${log[i].user_head}"`);
    });
  }
  if (runs.some((r) => !/^[0-9a-f]{16}$/.test(r.nonce))) fail('nonce format');
  if (new Set(runs.map((r) => r.nonce)).size !== runs.length) fail('nonces repeat');
  for (const r of runs) {
    if (r.error !== null) fail('unexpected error ' + r.error);
    const tol = real ? r.size * 0.25 + 24 : r.size * 0.1 + 4;
    if (Math.abs(r.prompt_tokens - r.size) > tol) fail(`size ${r.size}: ${r.prompt_tokens} prompt tokens`);
    const wantContent = Number(expContent) < 0 ? r.completion_tokens : Number(expContent);
    if (r.reasoning_tokens !== Number(expReason) || r.content_tokens !== wantContent)
      fail(`reasoning/content ${r.reasoning_tokens}/${r.content_tokens}`);
    close(r.prefill_tps, r.prompt_tokens / (r.ttft_ms / 1000), 'prefill_tps');
    if (!(r.ttft_ms > 0 && r.total_ms >= r.ttft_ms + r.decode_ms - 1e-6)) fail('timings inconsistent');
    if (r.completion_tokens > 1 && r.decode_ms > 0) close(r.decode_tps, (r.completion_tokens - 1) / (r.decode_ms / 1000), 'decode_tps');
  }
  const sizes = [...new Set(runs.filter((r) => r.phase === 'run').map((r) => r.size))].sort((p, q) => p - q);
  if (sum.sweep.length !== sizes.length) fail('summary cells');
  sum.sweep.forEach((cell, i) => {
    if (cell.size !== sizes[i]) fail('cell order');
    const rs = runs.filter((r) => r.phase === 'run' && r.size === cell.size);
    for (const k of ['ttft_ms', 'prefill_tps', 'decode_tps', 'total_ms', 'prompt_tokens'])
      compareStats(cell[k], stats(rs.map((r) => r[k])), `size ${cell.size} ${k}`);
  });
  console.log(`sweep ok: ${runs.length} runs, ${sizes.length} cells`);
} else if (cmd === 'agentic') {
  const [sumP, verdict, rverdict, clean, total] = a;
  const s = JSON.parse(fs.readFileSync(sumP, 'utf8')).agentic;
  if (!s) fail('no agentic summary');
  if (s.verdict !== verdict) fail(`verdict ${s.verdict} (ratio ${s.ratio}), expected ${verdict}`);
  if (s.restart_verdict !== rverdict) fail(`restart verdict ${s.restart_verdict}, expected ${rverdict}`);
  close(s.ratio, s.prefix_median_ms / s.cold_ttft_ms, 'ratio');
  if (s.tool_calls_clean !== Number(clean) || s.tool_calls !== Number(total))
    fail(`tool calls ${s.tool_calls_clean}/${s.tool_calls}, expected ${clean}/${total}`);
  console.log(`agentic ok: ${s.verdict}, ratio ${s.ratio.toFixed(3)}`);
} else if (cmd === 'burst') {
  const [runsP, sumP, expect] = a;
  const runs = lines(runsP), sum = JSON.parse(fs.readFileSync(sumP, 'utf8'));
  const want = Object.fromEntries(expect.split(',').map((kv) => kv.split(':')));
  for (const cell of sum.burst) {
    const rs = runs.filter((r) => r.burst_n === cell.n);
    if (rs.length !== cell.n) fail(`burst ${cell.n}: ${rs.length} runs recorded`);
    if (cell.ok + cell.failed !== cell.n) fail(`burst ${cell.n}: ok+failed`);
    const ok = rs.filter((r) => r.error === null);
    if (ok.length !== cell.ok) fail(`burst ${cell.n}: ok count`);
    const wall = Math.max(...rs.map((r) => r.end_ms)) - Math.min(...rs.map((r) => r.start_ms));
    close(cell.wall_ms, wall, `burst ${cell.n} wall`);
    close(cell.agg_tps, ok.reduce((t, r) => t + r.completion_tokens, 0) / (wall / 1000), `burst ${cell.n} agg_tps`);
    compareStats(cell.latency_ms, stats(ok.map((r) => r.total_ms)), `burst ${cell.n} latency`);
    compareStats(cell.ttft_ms, stats(ok.map((r) => r.ttft_ms)), `burst ${cell.n} ttft`);
    const spread = Math.max(...rs.map((r) => r.start_ms)) - Math.min(...rs.map((r) => r.start_ms));
    if (spread > 200) fail(`burst ${cell.n}: starts spread over ${spread} ms`);
    if (String(cell.serialized) !== want[cell.n]) fail(`burst ${cell.n}: serialized=${cell.serialized}`);
  }
  console.log(`burst ok: ${sum.burst.map((c) => c.n + (c.serialized ? 'S' : '')).join(',')}`);
} else if (cmd === 'errors') {
  const [runsP, ...pats] = a;
  const runs = lines(runsP);
  if (runs.length !== pats.length) fail(`${runs.length} runs, expected ${pats.length}`);
  runs.forEach((r, i) => {
    if (pats[i] === 'null') { if (r.error !== null) fail(`run ${i}: unexpected error ${r.error}`); }
    else if (r.error === null || !new RegExp(pats[i]).test(r.error)) fail(`run ${i}: error ${r.error} !~ ${pats[i]}`);
  });
  console.log('errors ok: ' + runs.map((r) => (r.error ? r.error.split(':')[0] : 'ok')).join(', '));
} else {
  fail('unknown command ' + cmd);
}
