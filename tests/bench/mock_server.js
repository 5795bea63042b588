#!/usr/bin/env node
// mock_server.js: a small OpenAI-compatible streaming server for the black-box tests of
// `cairn bench` (tests/bench/run_*.sh). Deterministic timings, a simulated prefix cache and
// injectable faults, so that error paths, statistics and verdicts can be checked exactly.
//
//   node mock_server.js --port-file F [--mode normal|stall|malformed|nousage|die|http500|serialize]
//        [--fault-on 2,5] [--prefix-cache on|off] [--tokens 32] [--tok-ms 2] [--prefill-us 100]
//        [--log FILE]
//
// It listens on an ephemeral port of 127.0.0.1 and writes the port to --port-file.
// Faults apply to the chat requests numbered in --fault-on (1-based), or to all when absent.
// Streams mix LF and CRLF framing, comments and writes split mid-line, as real servers do.
'use strict';
const http = require('http');
const fs = require('fs');

const opt = { mode: 'normal', prefixCache: 'on', tokens: 32, tokMs: 2, prefillUs: 100, baseMs: 2,
              faultOn: null, log: null, portFile: null };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i], v = process.argv[i + 1];
  if (k === '--mode') opt.mode = v;
  else if (k === '--fault-on') opt.faultOn = v.split(',').map(Number);
  else if (k === '--prefix-cache') opt.prefixCache = v;
  else if (k === '--tokens') opt.tokens = Number(v);
  else if (k === '--tok-ms') opt.tokMs = Number(v);
  else if (k === '--prefill-us') opt.prefillUs = Number(v);
  else if (k === '--log') opt.log = v;
  else if (k === '--port-file') opt.portFile = v;
  else { console.error('mock: unknown flag ' + k); process.exit(2); }
}

// Same rough token estimate as the client's (one per word, one per punctuation mark).
function countTokens(text) {
  let n = 0;
  for (const m of text.matchAll(/[A-Za-z0-9]+|[^\sA-Za-z0-9]/g)) {
    const w = m[0];
    if (/[A-Za-z0-9]/.test(w[0])) n += /[0-9]/.test(w) ? Math.ceil(w.length / 2) : (w.length <= 8 ? 1 : Math.ceil(w.length / 5));
    else n += 1;
  }
  return n;
}

const seen = [];          // previous prompts, for the simulated prefix cache
let nChat = 0;
let busy = Promise.resolve();   // serialize mode: one request at a time
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cachedChars(prompt) {
  if (opt.prefixCache !== 'on') return 0;
  let best = 0;
  for (const p of seen) {
    let i = 0;
    const n = Math.min(p.length, prompt.length);
    while (i < n && p.charCodeAt(i) === prompt.charCodeAt(i)) i++;
    if (i > best) best = i;
  }
  return Math.floor(best / 64) * 64;     // block granularity
}

function faulted(idx) {
  return opt.faultOn === null || opt.faultOn.includes(idx);
}

async function chat(req, res, body, idx) {
  const msgs = body.messages || [];
  const prompt = msgs.map((m) => m.content).join('\n');
  const user = (msgs.find((m) => m.role === 'user') || {}).content || '';
  if (opt.log) fs.appendFileSync(opt.log, JSON.stringify({ idx, user_head: user.slice(0, 40), prompt_len: prompt.length, max_tokens: body.max_tokens, temperature: body.temperature }) + '\n');
  const fault = faulted(idx) ? opt.mode : 'normal';
  if (fault === 'http500') {
    res.writeHead(500, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'mock internal error', type: 'server_error' } }));
    return;
  }
  const promptTokens = countTokens(prompt);
  const cached = cachedChars(prompt);
  seen.push(prompt);
  if (seen.length > 200) seen.shift();
  const uncached = Math.round(promptTokens * (1 - cached / Math.max(prompt.length, 1)));
  const maxTok = Math.min(body.max_tokens || 16, opt.tokens);
  const thinking = !!(body.chat_template_kwargs && body.chat_template_kwargs.enable_thinking);
  const nReason = thinking ? Math.min(8, maxTok - 1) : 0;

  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  res.write(': mock stream\n\n');
  await sleep(opt.baseMs + uncached * opt.prefillUs / 1000);
  const id = 'chatcmpl-mock' + idx;
  const frame = (obj, crlf) => 'data: ' + JSON.stringify(obj) + (crlf ? '\r\n\r\n' : '\n\n');
  const chunk = (delta, fin) => ({ id, object: 'chat.completion.chunk', model: body.model,
                                    choices: [{ index: 0, delta, finish_reason: fin || null }] });
  if (body.tools) {
    // one tool call; odd-numbered agentic calls break the schema (enum violation)
    const good = idx % 2 === 1;
    const name = good ? 'read_file' : 'delegate_task';
    const args = good ? '{"path": "src/kv/prefix.c", "max_lines": 40}' : '{"agent": "manager", "task": "fix it"}';
    res.write(frame(chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'call_' + idx, type: 'function',
                                                             function: { name, arguments: '' } }] })));
    for (const part of [args.slice(0, 10), args.slice(10)]) {
      await sleep(opt.tokMs);
      res.write(frame(chunk({ tool_calls: [{ index: 0, function: { arguments: part } }] }), true));
    }
    await sleep(opt.tokMs);
    res.write(frame(chunk({}, 'tool_calls')));
    const usage = { prompt_tokens: promptTokens, completion_tokens: 3, total_tokens: promptTokens + 3 };
    if (fault !== 'nousage') res.write(frame({ id, object: 'chat.completion.chunk', choices: [], usage }));
    res.end('data: [DONE]\n\n');
    return;
  }
  for (let t = 0; t < maxTok; t++) {
    if (t > 0) await sleep(opt.tokMs);
    if (t === 3 && fault === 'stall') return;          // never another byte, never an end
    if (t === 3 && fault === 'die') { process.exit(3); }
    if (t === 3 && fault === 'malformed') res.write('data: {"choices": [{"delta": {"content": "x"\n\n');
    const delta = t < nReason ? { reasoning_content: ' think' + t } : { content: ' word' + t };
    const s = frame(chunk(delta), t % 3 === 1);
    if (t % 4 === 2) {                                   // one event in two writes, split mid-line
      res.write(s.slice(0, 9));
      await sleep(1);
      res.write(s.slice(9));
    } else {
      res.write(s);
    }
    if (t % 5 === 4) res.write(': keep-alive\n\n');
  }
  res.write(frame(chunk({}, 'length')));
  if (fault !== 'nousage') {
    const usage = { prompt_tokens: promptTokens, completion_tokens: maxTok, total_tokens: promptTokens + maxTok,
                    completion_tokens_details: { reasoning_tokens: nReason } };
    res.write(frame({ id, object: 'chat.completion.chunk', choices: [], usage }));
  }
  res.end('data: [DONE]');                            // no trailing newline: the client must cope
}

const server = http.createServer((req, res) => {
  let data = '';
  req.on('data', (d) => { data += d; });
  req.on('end', async () => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'mock-model', object: 'model' }] }));
      return;
    }
    if (req.method === 'POST' && req.url === '/mock/restart') {   // forgets the cache, like a restart
      seen.length = 0;
      res.writeHead(200);
      res.end('{}');
      return;
    }
    if (req.method === 'POST' && req.url === '/v1/chat/completions') {
      let body;
      try { body = JSON.parse(data); } catch (e) {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'bad JSON' } }));
        return;
      }
      const idx = ++nChat;
      if (opt.mode === 'serialize') {
        const prev = busy;
        let release;
        busy = new Promise((r) => { release = r; });
        await prev;
        try { await chat(req, res, body, idx); } finally { release(); }
      } else {
        await chat(req, res, body, idx);
      }
      return;
    }
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'not found' } }));
  });
});
server.keepAliveTimeout = 1000;
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  if (opt.portFile) fs.writeFileSync(opt.portFile + '.tmp', String(port)), fs.renameSync(opt.portFile + '.tmp', opt.portFile);
  else console.log(port);
});
