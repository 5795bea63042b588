// Ollama's API (issue 18) with the official `ollama` npm client (ollama-js, pinned in package.json):
// chat and generate, streaming (NDJSON) and not, tools in Ollama's shape, think, images on a
// text-only model, format (JSON Schema, validated with ajv), context, fill in the middle, the model
// listing routes, and hostile input with raw HTTP. The built-in fake model with scripted outputs
// (--test-script); CAIRN_TEST_MODEL=DIR runs it on a real checkpoint (its template, tokenizer and
// engine: format and FIM are checked there, the fake cannot constrain and has no FIM tokens).
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { check, summary, startServer, request, metrics, sleep, checkCleanStderr, metricsWhenIdle, writeScript, collect } from './lib.mjs';

const FIM_PREFIX = 'def add(a, b):\n', FIM_SUFFIX = '\n    return c\n';
const SCRIPT = [
  { match: 'O_FINAL', output: 'It is sunny in Paris.' },
  { match: 'O_THINK', output: '<think>\nLet me think.\n</think>\n\nThe answer is 4.' },
  { match: 'O_TOOLS', output: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>' },
  // delay_ms slows the fake provider only: on a real engine the output's length keeps the stream
  // open until the client's abort arrives (a short one could end first, and answer 200, not 499)
  { match: 'O_SLOW', output: 'slow answer that takes a while to come out,' + ' word after word'.repeat(600), delay_ms: 1500 },
  { match: `<|fim_prefix|>${FIM_PREFIX}<|fim_suffix|>${FIM_SUFFIX}<|fim_middle|>`, output: '    c = a + b' },
];
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'get_time', description: 'time in a zone', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
];

const scriptFile = writeScript('ollama', SCRIPT);


async function rejects(promise) {
  try { await promise; return null; } catch (e) { return e; }
}

async function main() {
  const model = process.env.CAIRN_TEST_MODEL;
  const extra = model ? [model, ...(process.env.LOAD_ARGS || '').split(' ').filter(Boolean)] : ['--fake'];
  const srv = await startServer([...extra, '--test-script', scriptFile, '--served-model-name', 'cairn-test']);
  const ol = new Ollama({ host: srv.url });
  const M = 'cairn-test';
  const m0 = await metrics(srv.port);

  // ---- listing
  const ver = await ol.version();
  check(/^\d+\.\d+\.\d+$/.test(ver.version), 'version', ver);
  const tags = await ol.list();
  check(tags.models.length === 1 && tags.models[0].name === 'cairn-test:latest' && tags.models[0].model === 'cairn-test:latest' &&
        !isNaN(Date.parse(tags.models[0].modified_at)) && typeof tags.models[0].details.family === 'string', 'tags lists name:latest', tags);
  const ps = await ol.ps();
  check(ps.models.length === 1 && ps.models[0].context_length > 0 && !isNaN(Date.parse(ps.models[0].expires_at)), 'ps', ps);
  const show = await ol.show({ model: 'cairn-test:latest' });
  check(show.capabilities.includes('completion') && show.capabilities.includes('tools') && show.template.length > 0, 'show capabilities and template', show.capabilities);
  check(show.capabilities.includes('insert') === !!model, 'show: insert only with FIM tokens', show.capabilities);
  const arch = show.model_info['general.architecture'];
  check(show.model_info[`${arch}.context_length`] === ps.models[0].context_length, 'show: <arch>.context_length', show.model_info);
  if (model) check(arch === 'qwen3' && show.details.family === 'qwen3' && /^\d+(\.\d)?[MB]$/.test(show.details.parameter_size) && show.details.quantization_level === 'BF16', 'show details of the real model', show.details);
  const root = await request(srv.port, 'GET', '/');
  check(root.status === 200 && root.body === 'Ollama is running', 'GET / liveness', root.body);

  // ---- chat, whole and streamed
  const c1 = await ol.chat({ model: M, messages: [{ role: 'user', content: 'O_FINAL' }] });
  check(c1.message.role === 'assistant' && c1.message.content === 'It is sunny in Paris.' && c1.done === true && c1.done_reason === 'stop', 'chat whole', c1);
  check(c1.model === M && !isNaN(Date.parse(c1.created_at)) && c1.prompt_eval_count > 0 && c1.eval_count > 0 && c1.total_duration > 0 &&
        c1.eval_duration >= 0 && c1.prompt_eval_duration > 0 && c1.total_duration >= c1.eval_duration, 'chat counts and durations', c1);
  const c1l = await ol.chat({ model: 'cairn-test:latest', messages: [{ role: 'user', content: 'O_FINAL' }] });
  check(c1l.message.content === 'It is sunny in Paris.' && c1l.model === 'cairn-test:latest', 'name:latest answers and is echoed', c1l.model);
  const parts = await collect(await ol.chat({ model: M, messages: [{ role: 'user', content: 'O_THINK' }], stream: true, think: true }));
  const last = parts.at(-1);
  const thinking = parts.map((p) => p.message.thinking || '').join(''), content = parts.map((p) => p.message.content).join('');
  check(parts.length > 2 && parts.slice(0, -1).every((p) => p.done === false) && last.done && last.done_reason === 'stop' && last.eval_count > 0, 'stream: parts then done', last);
  check(thinking.trim() === 'Let me think.' && content === 'The answer is 4.', 'stream: thinking split from content', { thinking, content });
  const cut = await ol.chat({ model: M, messages: [{ role: 'user', content: 'hello there' }], options: { num_predict: 3, temperature: 0, top_k: 5, top_p: 0.9, seed: 7, repeat_penalty: 1.1, stop: ['zzz'], num_ctx: 2048, fancy_new_option: 1 } });
  check(cut.done_reason === 'length' && cut.eval_count === 3, 'num_predict caps with done_reason length', cut);
  check(/ignoring unknown Ollama option 'fancy_new_option'/.test(srv.stderr()), 'unknown option logged, not refused');
  const nothink = await ol.chat({ model: M, messages: [{ role: 'user', content: 'O_FINAL' }], think: false, keep_alive: '5m' });
  check(nothink.message.content === 'It is sunny in Paris.', 'think false, keep_alive accepted', nothink);
  const load = await ol.chat({ model: M, messages: [] });
  check(load.done && load.done_reason === 'load', 'empty messages: load', load);

  // ---- tools: two calls in Ollama's shape, then the follow-up turn
  const t1 = await ol.chat({ model: M, messages: [{ role: 'user', content: 'O_TOOLS' }], tools: TOOLS });
  const calls = t1.message.tool_calls || [];
  check(calls.length === 2 && calls[0].function.name === 'get_weather' && calls[0].function.arguments.city === 'Paris' &&
        calls[1].function.arguments.tz === 'CET' && t1.message.content === '' && t1.done_reason === 'stop', 'two tool calls, arguments as objects', t1.message);
  const ts = await collect(await ol.chat({ model: M, messages: [{ role: 'user', content: 'O_TOOLS' }], tools: TOOLS, stream: true }));
  const sCalls = ts.flatMap((p) => p.message.tool_calls || []);
  check(sCalls.length === 2 && sCalls[1].function.name === 'get_time' && typeof sCalls[0].function.arguments === 'object' &&
        ts.every((p) => !p.message.content), 'streamed calls arrive whole, no whitespace content', ts.map((p) => p.message));
  const t2 = await ol.chat({ model: M, tools: TOOLS, messages: [
    { role: 'user', content: 'weather and time?' },
    { role: 'assistant', content: '', tool_calls: calls.map((c) => ({ function: c.function })) },   // as older clients send them: no ids
    { role: 'tool', content: 'sunny', tool_name: 'get_weather' },
    { role: 'tool', content: '12:00', tool_name: 'get_time' },
    { role: 'user', content: 'O_FINAL' }] });
  check(t2.message.content === 'It is sunny in Paris.', 'tool results answered', t2.message);

  // ---- images on a text-only model: placeholders in history, refused alone in the last turn
  const img = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
  const i1 = await ol.chat({ model: M, messages: [{ role: 'user', content: 'look', images: [img] }, { role: 'assistant', content: 'ok' }, { role: 'user', content: 'O_FINAL' }] });
  check(i1.message.content === 'It is sunny in Paris.' && /replaced by a placeholder/.test(srv.stderr()), 'image in history: placeholder', i1.message);
  const i2 = await rejects(ol.chat({ model: M, messages: [{ role: 'user', content: '', images: [img] }] }));
  check(i2 && i2.status_code === 400 && /text only/.test(i2.error), 'image alone in the last turn: 400', i2 && i2.error);

  // ---- generate: templated, raw, context, streamed
  const g1 = await ol.generate({ model: M, prompt: 'O_FINAL', system: 'be brief' });
  check(g1.response === 'It is sunny in Paris.' && g1.done && g1.done_reason === 'stop' && Array.isArray(g1.context) &&
        g1.context.length === g1.prompt_eval_count + g1.eval_count, 'generate: response and context = prompt + output ids', { r: g1.response, ctx: g1.context?.length, p: g1.prompt_eval_count, e: g1.eval_count });
  const g2 = await ol.generate({ model: M, prompt: 'hello again', context: g1.context, options: { num_predict: 2 } });
  const plain = await ol.generate({ model: M, prompt: 'hello again', options: { num_predict: 2 } });
  check(g2.prompt_eval_count === g1.context.length + plain.prompt_eval_count && g2.context.slice(0, g1.context.length).join() === g1.context.join(),
        'context ids come before the new prompt', { g2: g2.prompt_eval_count, ctx: g1.context.length, plain: plain.prompt_eval_count });
  const raw = await ol.generate({ model: M, prompt: 'O_FINAL as is', raw: true });
  const tok = await request(srv.port, 'POST', '/tokenize', { prompt: 'O_FINAL as is', add_special_tokens: true });
  check(raw.response === 'It is sunny in Paris.' && raw.prompt_eval_count === tok.json.count, 'raw: the prompt as is', { raw: raw.prompt_eval_count, tok: tok.json.count });
  const gs = await collect(await ol.generate({ model: M, prompt: 'O_THINK', stream: true }));
  check(gs.map((p) => p.response).join('') === 'The answer is 4.' && gs.map((p) => p.thinking || '').join('').trim() === 'Let me think.' &&
        gs.at(-1).done && gs.at(-1).context.length > 0, 'generate streamed: response, thinking, context', gs.at(-1));
  const lp = await ol.generate({ model: M, prompt: 'O_FINAL', logprobs: true, top_logprobs: 2 });
  check(lp.logprobs?.length === lp.eval_count && typeof lp.logprobs[0].token === 'string' && lp.logprobs[0].logprob <= 0 && lp.logprobs[0].top_logprobs.length === 2, 'logprobs', lp.logprobs?.[0]);

  const lps = await collect(await ol.chat({ model: M, messages: [{ role: 'user', content: 'O_TOOLS' }], tools: TOOLS, stream: true, logprobs: true }));
  check(lps.flatMap((p) => p.logprobs || []).length === lps.at(-1).eval_count, 'streamed logprobs: one per token, tool-call tokens included',
        { n: lps.flatMap((p) => p.logprobs || []).length, eval: lps.at(-1).eval_count });

  // ---- format: a JSON Schema (validated with ajv) and "json"; the fake cannot constrain and says so
  const schema = { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, temp: { type: 'integer', minimum: -50, maximum: 60 } }, required: ['city', 'temp'], additionalProperties: false };
  if (model) {
    const { default: Ajv2020 } = await import('../text/node_modules/ajv/dist/2020.js');
    const ajv = new Ajv2020({ strict: false });
    const validate = ajv.compile(schema);
    for (const seed of [1, 2]) {
      const f = await ol.chat({ model: M, messages: [{ role: 'user', content: 'weather as json' }], format: schema, options: { seed, temperature: 1, num_predict: 120 } });
      let v; try { v = JSON.parse(f.message.content); } catch { v = undefined; }
      check(v !== undefined && validate(v), `format schema seed ${seed}: ajv-valid`, { content: f.message.content, errors: validate.errors });
    }
    const fj = await ol.generate({ model: M, prompt: 'json please', format: 'json', options: { seed: 3, num_predict: 80 } });
    let o; try { o = JSON.parse(fj.response); } catch { o = undefined; }
    check(o !== null && typeof o === 'object' && !Array.isArray(o), 'format json: an object', fj.response);
  } else {
    const f = await request(srv.port, 'POST', '/api/chat', { model: M, stream: false, messages: [{ role: 'user', content: 'x' }], format: schema });
    check(f.status === 400 && typeof f.json?.error === 'string', 'format on the fake: a clear 400', f.body);
  }

  // ---- fill in the middle: Qwen's FIM tokens on the real tokenizer; refused where there are none
  if (model) {
    const fim = await ol.generate({ model: M, prompt: FIM_PREFIX, suffix: FIM_SUFFIX });
    const want = await request(srv.port, 'POST', '/tokenize', { prompt: `<|fim_prefix|>${FIM_PREFIX}<|fim_suffix|>${FIM_SUFFIX}<|fim_middle|>`, add_special_tokens: true });
    check(fim.response === '    c = a + b' && fim.prompt_eval_count === want.json.count, 'generate suffix: the FIM prompt', { r: fim.response, p: fim.prompt_eval_count, want: want.json.count });
    const oa = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const cf = await oa.completions.create({ model: M, prompt: FIM_PREFIX, suffix: FIM_SUFFIX, max_tokens: 20 });
    check(cf.choices[0].text === '    c = a + b' && cf.usage.prompt_tokens === want.json.count, '/v1/completions suffix: the FIM prompt', cf);
    const cfs = await oa.completions.create({ model: M, prompt: FIM_PREFIX, suffix: FIM_SUFFIX, max_tokens: 20, stream: true });
    let text = ''; for await (const ch of cfs) text += ch.choices[0]?.text || '';
    check(text === '    c = a + b', '/v1/completions suffix streamed', text);
  } else {
    const e1 = await rejects(ol.generate({ model: M, prompt: 'def f(', suffix: ')' }));
    check(e1 && e1.status_code === 400 && /FIM tokens/.test(e1.error), 'generate suffix without FIM tokens: 400 that says so', e1 && e1.error);
    const e2 = await request(srv.port, 'POST', '/v1/completions', { prompt: 'def f(', suffix: ')' });
    check(e2.status === 400 && /FIM tokens/.test(e2.json?.error?.message) && e2.json.error.param === 'suffix', '/v1/completions suffix without FIM tokens: 400', e2.body);
    const e3 = await request(srv.port, 'POST', '/v1/completions', { prompt: 'def f(', suffix: '', max_tokens: 2 });
    check(e3.status === 200, 'empty suffix on a model without FIM: a plain completion', e3.body);
  }

  // ---- hostile
  const msgs = [{ role: 'user', content: 'hi' }];
  const bad = [
    ['chat', 'no model', { messages: msgs }, 400, /model is required/],
    ['chat', 'model number', { model: 5, messages: msgs }, 400, /model/],
    ['chat', 'unknown model', { model: 'llama9:70b', messages: msgs }, 404, /llama9:70b/],
    ['chat', 'unknown tag', { model: 'cairn-test:7b', messages: msgs }, 404, /cairn-test:7b/],
    ['chat', 'messages object', { model: M, messages: {} }, 400, /messages/],
    ['chat', 'message not object', { model: M, messages: [7] }, 400, /messages\[0\]/],
    ['chat', 'bad role', { model: M, messages: [{ role: 'wizard', content: 'x' }] }, 400, /role/],
    ['chat', 'user without content', { model: M, messages: [{ role: 'user' }], options: { num_predict: 1 } }, 200, /./],
    ['chat', 'content number', { model: M, messages: [{ role: 'user', content: 5 }] }, 400, /content/],
    ['chat', 'images not array', { model: M, messages: [{ role: 'user', content: 'x', images: 'abc' }] }, 400, /images/],
    ['chat', 'image not string', { model: M, messages: [{ role: 'user', content: 'x', images: [5] }] }, 400, /images/],
    ['chat', 'tool_calls not array', { model: M, messages: [{ role: 'assistant', content: '', tool_calls: 5 }, { role: 'user', content: 'x' }] }, 400, /tool_calls/],
    ['chat', 'tool result for no call', { model: M, messages: [{ role: 'tool', content: 'x', tool_name: 'f' }] }, 400, /no earlier assistant message/],
    ['chat', 'tools object', { model: M, messages: msgs, tools: {} }, 400, /tools/],
    ['chat', 'tool without function', { model: M, messages: msgs, tools: [{ type: 'function' }] }, 400, /tools\[0\]/],
    ['chat', 'options array', { model: M, messages: msgs, options: [] }, 400, /options/],
    ['chat', 'temperature string', { model: M, messages: msgs, options: { temperature: 'hot' } }, 400, /temperature/],
    ['chat', 'temperature out of range', { model: M, messages: msgs, options: { temperature: 50 } }, 400, /temperature/],
    ['chat', 'top_k fraction', { model: M, messages: msgs, options: { top_k: 1.5 } }, 400, /top_k/],
    ['chat', 'stop number', { model: M, messages: msgs, options: { stop: 5 } }, 400, /stop/],
    ['chat', 'stop with a number', { model: M, messages: msgs, options: { stop: ['a', 5] } }, 400, /stop/],
    ['chat', 'num_ctx string', { model: M, messages: msgs, options: { num_ctx: 'big' } }, 400, /num_ctx/],
    ['chat', 'use_mmap number', { model: M, messages: msgs, options: { use_mmap: 1 } }, 400, /use_mmap/],
    ['chat', 'mirostat', { model: M, messages: msgs, options: { mirostat: 2 } }, 400, /mirostat/],
    ['chat', 'typical_p', { model: M, messages: msgs, options: { typical_p: 0.5 } }, 400, /typical_p/],
    ['chat', 'num_predict -3', { model: M, messages: msgs, options: { num_predict: -3 } }, 400, /num_predict/],
    ['chat', 'stream string', { model: M, messages: msgs, stream: 'yes' }, 400, /stream/],
    ['chat', 'think bogus', { model: M, messages: msgs, think: 'ultra' }, 400, /think/],
    ['chat', 'keep_alive object', { model: M, messages: msgs, keep_alive: {} }, 400, /keep_alive/],
    ['chat', 'format xml', { model: M, messages: msgs, format: 'xml' }, 400, /format/],
    ['chat', 'format number', { model: M, messages: msgs, format: 5 }, 400, /format/],
    ['chat', 'logprobs string', { model: M, messages: msgs, logprobs: 'yes' }, 400, /logprobs/],
    ['chat', 'top_logprobs 99', { model: M, messages: msgs, logprobs: true, top_logprobs: 99 }, 400, /top_logprobs/],
    ['chat', 'over the context', { model: M, messages: [{ role: 'user', content: 'hello world '.repeat(6000) }] }, 400, /maximum context length/],
    ['chat', '20000 messages', { model: M, messages: Array.from({ length: 20000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'word ' + i })) }, 400, /maximum context length/],
    ['chat', '200 tools, one bad', { model: M, messages: msgs, tools: [...Array(199).fill(TOOLS[0]), { type: 'function', function: { name: 5 } }] }, 400, /tools\[199\]/],
    ['generate', 'prompt number', { model: M, prompt: 5 }, 400, /prompt/],
    ['generate', 'suffix number', { model: M, prompt: 'x', suffix: 5 }, 400, /suffix/],
    ['generate', 'system number', { model: M, prompt: 'x', system: 5 }, 400, /system/],
    ['generate', 'raw string', { model: M, prompt: 'x', raw: 'yes' }, 400, /raw/],
    ['generate', 'template override', { model: M, prompt: 'x', template: '{{ .Prompt }}' }, 400, /template/],
    ['generate', 'context strings', { model: M, prompt: 'x', context: ['a'] }, 400, /context/],
    ['generate', 'context negative', { model: M, prompt: 'x', context: [-1] }, 400, /context/],
    ['generate', 'context huge id', { model: M, prompt: 'x', context: [1e9] }, 400, /context/],
    ['generate', 'context object', { model: M, prompt: 'x', context: {} }, 400, /context/],
    ['generate', 'images not array', { model: M, prompt: 'x', images: 5 }, 400, /images/],
    ['show', 'no model', {}, 400, /model is required/],
    ['show', 'unknown model', { model: 'nope' }, 404, /nope/],
  ];
  for (const [route, name, body, status, re] of bad) {
    const res = await request(srv.port, 'POST', `/api/${route}`, { stream: false, ...body });
    const ok = status === 200 ? res.status === 200 && res.json?.done === true : res.status === status && typeof res.json?.error === 'string' && re.test(res.json.error);
    check(ok, `hostile ${route}: ${name} -> ${status}${status === 200 ? '' : ' {"error"}'}`, `${res.status} ${res.body.slice(0, 200)}`);
  }
  const unk = await request(srv.port, 'POST', '/api/chat', { model: M, stream: false, messages: [{ role: 'user', content: 'O_FINAL' }], future_field: { x: 1 }, truncate: true });
  check(unk.status === 200 && unk.json.message.content === 'It is sunny in Paris.', 'unknown top-level fields ignored, as Ollama does', unk.body.slice(0, 200));
  const trunc = await request(srv.port, 'POST', '/api/chat', '{"model":"cairn-test","messages":[');
  check(trunc.status === 400 && typeof trunc.json?.error === 'string', 'truncated JSON: 400 {"error"}', trunc.body);
  check((await request(srv.port, 'GET', '/api/chat')).status === 405, 'GET /api/chat 405');
  check((await request(srv.port, 'POST', '/api/tags', {})).status === 405, 'POST /api/tags 405');
  check((await request(srv.port, 'POST', '/api/embed', { model: M, input: 'x' })).status === 404, '/api/embed not served: 404');
  const big = await request(srv.port, 'POST', '/api/generate', { model: M, stream: false, prompt: 'x', context: Array(300000).fill(1) });
  check(big.status === 400 && /context/.test(big.json?.error), 'huge context array: 400', big.body.slice(0, 200));
  // streamed default: no "stream" field means NDJSON
  const nd = await request(srv.port, 'POST', '/api/generate', { model: M, prompt: 'O_FINAL' });
  const lines = nd.body.trim().split('\n').map((l) => JSON.parse(l));
  check(/application\/x-ndjson/.test(nd.headers['content-type']) && lines.length > 1 && lines.at(-1).done === true && lines.map((l) => l.response).join('') === 'It is sunny in Paris.',
        'stream absent: NDJSON lines', nd.body.slice(0, 300));

  // ---- a client that leaves mid-stream (ollama-js abort): cancelled, nothing leaks
  const it = await ol.chat({ model: M, messages: [{ role: 'user', content: 'O_SLOW' }], stream: true });
  const aborted = await rejects((async () => { for await (const p of it) { if (p.message.content) it.abort(); } })());
  check(aborted !== null, 'abort ends the client stream', aborted && aborted.name);
  const m1 = await metricsWhenIdle(srv.port);
  check(m1['cairn_running'] === 0 && m1['cairn_kv_blocks{state="used"}'] === m0['cairn_kv_blocks{state="used"}'], 'disconnect mid-stream frees the request and its KV',
        { before: m0['cairn_kv_blocks{state="used"}'], after: m1['cairn_kv_blocks{state="used"}'], running: m1['cairn_running'] });
  check(m1['cairn_requests_total{endpoint="/api/chat",status="200"}'] > 5 && m1['cairn_requests_total{endpoint="/api/chat",status="400"}'] > 20 &&
        m1['cairn_requests_total{endpoint="/api/chat",status="499"}'] >= 1, 'metrics count /api/chat (with the 499)');
  check((await request(srv.port, 'GET', '/health')).status === 200, 'server alive at the end');

  await srv.stop();
  checkCleanStderr(srv);
  process.exit(summary('server/ollama'));
}

main().catch((e) => { console.error('FAIL', e); process.exit(1); });
