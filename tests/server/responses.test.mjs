// POST /v1/responses (issue 18: Codex CLI, OpenAI Agents, AI SDK) with the official `openai` SDK's
// client.responses.create, streaming and not, and raw HTTP for the event sequence and hostile input.
// The built-in fake model with scripted outputs (--test-script); CAIRN_TEST_MODEL=DIR runs it on a
// real checkpoint (its template and tokenizer, the real engine) with the same script.
import http from 'node:http';
import OpenAI from 'openai';
import { check, summary, startServer, request, sse, metrics, sleep, checkCleanStderr, metricsWhenIdle, writeScript, collect } from './lib.mjs';

const SCRIPT = [
  { match: 'R_FINAL', output: 'The command printed hello.' },
  { match: 'R_THINK', output: '<think>\nLet me think.\n</think>\n\nThe answer is 4.' },
  { match: 'R_TWO_CALLS', output: '<tool_call>\n{"name": "shell", "arguments": {"command": ["echo", "hello"]}}\n</tool_call>\n<tool_call>\n{"name": "shell", "arguments": {"command": ["ls"]}}\n</tool_call>' },
  { match: 'R_SLOW', output: 'slow answer that takes a while to come out', delay_ms: 1500 },
];
const TOOLS = [
  { type: 'function', name: 'shell', description: 'run a command', parameters: { type: 'object', properties: { command: { type: 'array', items: { type: 'string' } } } }, strict: false },
  { type: 'web_search' },
  { type: 'custom', name: 'apply_patch', format: { type: 'grammar' } },
];

const scriptFile = writeScript('resp', SCRIPT);


async function main() {
  const model = process.env.CAIRN_TEST_MODEL;
  const extra = model ? [model, ...(process.env.LOAD_ARGS || '').split(' ').filter(Boolean)] : ['--fake'];
  const srv = await startServer([...extra, '--test-script', scriptFile, '--served-model-name', 'cairn-test']);
  const oa = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
  const m0 = await metrics(srv.port);

  // ---- plain text, non-streaming
  const r1 = await oa.responses.create({ model: 'cairn-test', input: 'hello there', max_output_tokens: 6, store: false });
  check(r1.object === 'response' && r1.id.startsWith('resp_') && r1.status === 'incomplete' && r1.incomplete_details?.reason === 'max_output_tokens',
        'max_output_tokens hit: incomplete', { status: r1.status, d: r1.incomplete_details });
  check(r1.usage.output_tokens === 6 && r1.usage.total_tokens === r1.usage.input_tokens + 6 && r1.usage.input_tokens_details.cached_tokens >= 0, 'usage', r1.usage);
  check(r1.output[0].type === 'message' && r1.output[0].content[0].type === 'output_text' && r1.output_text.length > 0 && r1.output[0].status === 'incomplete', 'message item cut by the cap: incomplete', r1.output);
  const fin = await oa.responses.create({ model: 'cairn-test', instructions: 'You are Codex.', input: [{ role: 'user', content: [{ type: 'input_text', text: 'R_FINAL' }] }], store: false });
  check(fin.status === 'completed' && fin.output_text === 'The command printed hello.' && fin.store === false && fin.instructions === 'You are Codex.', 'completed with instructions echoed', fin);

  // ---- a Codex turn: tools (function + tolerated others), a call, its output, the final answer
  const t1 = await oa.responses.create({ model: 'cairn-test', input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'R_TWO_CALLS' }] }],
    tools: TOOLS, tool_choice: 'auto', parallel_tool_calls: true, store: false, include: ['reasoning.encrypted_content'], prompt_cache_key: 'abc' });
  const calls = t1.output.filter((o) => o.type === 'function_call');
  check(calls.length === 2 && calls[0].name === 'shell' && JSON.parse(calls[0].arguments).command[1] === 'hello' && calls[0].call_id.startsWith('call_') &&
        t1.output.every((o) => o.type === 'function_call'), 'two function_call items, no whitespace message between', t1.output);
  check(/leaving out the tool of type 'web_search'/.test(srv.stderr()), 'non-function tools left out with a log');
  const t1one = await oa.responses.create({ model: 'cairn-test', input: 'R_TWO_CALLS', tools: TOOLS, parallel_tool_calls: false, store: false });
  check(t1one.output.filter((o) => o.type === 'function_call').length === 1 && t1one.status === 'completed', 'parallel_tool_calls false: one call', t1one.output);
  const history = [
    { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'env: /tmp' }] },
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'run it' }, { type: 'input_image', image_url: 'data:image/png;base64,AAAA' }] },
    { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: 'I should run it.' }], encrypted_content: 'opaque' },
    { type: 'function_call', call_id: calls[0].call_id, name: 'shell', arguments: calls[0].arguments },
    { type: 'function_call_output', call_id: calls[0].call_id, output: 'hello\n' },
    { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'R_FINAL' }] },
  ];
  const t2 = await oa.responses.create({ model: 'cairn-test', input: history, tools: TOOLS, store: false, reasoning: { effort: 'low', summary: 'auto' } });
  check(t2.output_text === 'The command printed hello.' && t2.status === 'completed', 'turn 2 after the call output answered', t2.output);

  // ---- streaming: the SDK's events, in order
  const evs = await collect(await oa.responses.create({ model: 'cairn-test', input: 'R_THINK', stream: true, store: false }));
  const types = evs.map((e) => e.type);
  check(types[0] === 'response.created' && types[1] === 'response.in_progress' && types.at(-1) === 'response.completed', 'stream starts created, ends completed', types.join(','));
  check(evs.every((e, i) => e.sequence_number === i), 'sequence numbers count up');
  const rs = evs.filter((e) => e.type === 'response.reasoning_summary_text.delta').map((e) => e.delta).join('');
  const txt = evs.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  check(rs.trim() === 'Let me think.' && txt === 'The answer is 4.', 'reasoning summary and text deltas', { rs, txt });
  const done = evs.at(-1).response;
  check(done.output.length === 2 && done.output[0].type === 'reasoning' && done.output[1].content[0].text === 'The answer is 4.' && done.usage.output_tokens > 0,
        'response.completed carries the whole output and usage', done);
  const added = evs.filter((e) => e.type === 'response.output_item.added').map((e) => e.item.type);
  const idone = evs.filter((e) => e.type === 'response.output_item.done').map((e) => e.item.type);
  check(added.join() === 'reasoning,message' && idone.join() === 'reasoning,message', 'output_item added/done per item', { added, idone });
  check(types.includes('response.content_part.added') && types.includes('response.output_text.done') && types.includes('response.content_part.done'), 'content part events');
  const cevs = await collect(await oa.responses.create({ model: 'cairn-test', input: 'R_TWO_CALLS', tools: TOOLS, stream: true, store: false }));
  const argDone = cevs.filter((e) => e.type === 'response.function_call_arguments.done');
  const argDelta = cevs.filter((e) => e.type === 'response.function_call_arguments.delta' && e.output_index === 0).map((e) => e.delta).join('');
  check(argDone.length === 2 && JSON.parse(argDone[0].arguments).command[0] === 'echo' && argDelta === argDone[0].arguments, 'function_call_arguments delta/done', argDone);
  check(!cevs.some((e) => e.type === 'response.output_text.delta'), 'no whitespace text between streamed calls', cevs.map((e) => e.type).join(','));
  const fcItem = cevs.find((e) => e.type === 'response.output_item.done' && e.item.type === 'function_call').item;
  check(fcItem.status === 'completed' && fcItem.name === 'shell' && fcItem.call_id.startsWith('call_'), 'function_call item done', fcItem);
  const inc = await sse(srv.port, '/v1/responses', { input: 'hello there', stream: true, max_output_tokens: 3 });
  const last = JSON.parse(inc.events.at(-1).data);
  const incItem = JSON.parse(inc.events.filter((e) => e.event === 'response.output_item.done').at(-1).data).item;
  check(incItem.status === 'incomplete' && last.response.output[0].status === 'incomplete', 'streamed item cut by the cap: incomplete', incItem);
  check(inc.events.at(-1).event === 'response.incomplete' && last.response.status === 'incomplete' && last.response.incomplete_details.reason === 'max_output_tokens', 'response.incomplete when the cap is hit', last);

  // ---- refused: stateful features, bad shapes
  const bad = [
    ['store true', { input: 'x', store: true }, /store/],
    ['previous_response_id', { input: 'x', previous_response_id: 'resp_1' }, /previous_response_id/],
    ['conversation', { input: 'x', conversation: 'conv_1' }, /conversation/],
    ['background', { input: 'x', background: true }, /background/],
    ['unknown text.format type', { input: 'x', text: { format: { type: 'xml' } } }, /xml/],
    ['text.format json_schema without schema', { input: 'x', text: { format: { type: 'json_schema', name: 'x' } } }, /schema/],
    ['input missing', {}, /input/],
    ['input number', { input: 5 }, /input/],
    ['input empty array', { input: [] }, /input/],
    ['item not object', { input: [7] }, /input\[0\]/],
    ['unknown item type', { input: [{ type: 'computer_call', id: 'x' }] }, /computer_call/],
    ['bad role', { input: [{ role: 'tool', content: 'x' }] }, /role/],
    ['content number', { input: [{ role: 'user', content: 5 }] }, /content/],
    ['unknown content part', { input: [{ role: 'user', content: [{ type: 'input_weird', text: 'x' }] }] }, /input_weird/],
    ['image alone last', { input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }, /text only/],
    ['function_call without call_id', { input: [{ type: 'function_call', name: 'shell', arguments: '{}' }] }, /call_id/],
    ['function_call arguments object', { input: [{ type: 'function_call', call_id: 'c', name: 'shell', arguments: {} }] }, /arguments/],
    ['output for unknown call', { input: [{ type: 'function_call_output', call_id: 'nope', output: 'x' }] }, /nope/],
    ['reasoning summary not array', { input: [{ type: 'reasoning', summary: 'x' }, { role: 'user', content: 'hi' }] }, /summary/],
    ['instructions number', { input: 'x', instructions: 5 }, /instructions/],
    ['tools not array', { input: 'x', tools: {} }, /tools/],
    ['tool without name', { input: 'x', tools: [{ type: 'function', parameters: {} }] }, /tools\[0\]/],
    ['tool params not object', { input: 'x', tools: [{ type: 'function', name: 'f', parameters: 'x' }] }, /tools\[0\]/],
    ['tool not object', { input: 'x', tools: ['f'] }, /tools\[0\]/],
    ['reasoning effort bogus', { input: 'x', reasoning: { effort: 'ultra' } }, /reasoning.effort/],
    ['reasoning not object', { input: 'x', reasoning: 'high' }, /reasoning/],
    ['max_output_tokens zero', { input: 'x', max_output_tokens: 0 }, /max_output_tokens/],
    ['max_output_tokens string', { input: 'x', max_output_tokens: '5' }, /max_output_tokens/],
    ['stream string', { input: 'x', stream: 'yes' }, /stream/],
    ['parallel_tool_calls string', { input: 'x', parallel_tool_calls: 'no' }, /parallel_tool_calls/],
    ['unknown model', { input: 'x', model: 'gpt-9' }, /gpt-9/],
    ['prompt over the context', { input: 'hello world '.repeat(6000) }, /maximum context length/],
  ];
  // tool_choice required is enforced by constrained decoding: a real model must call a tool; the
  // fake provider cannot constrain and must say so (never an unconstrained answer)
  {
    const res = await request(srv.port, 'POST', '/v1/responses', { input: 'x', tools: TOOLS, tool_choice: 'required', max_output_tokens: 200 });
    if (model) check(res.status === 200 && res.json?.output?.some(o => o.type === 'function_call'), 'tool_choice required: a function call', `${res.status} ${res.body.slice(0, 200)}`);
    else check(res.status >= 400 && res.json?.error?.message, 'tool_choice required on the fake: refused', `${res.status} ${res.body.slice(0, 200)}`);
    // text.format likewise: JSON on a model, a 400 on the fake
    const fmt = await request(srv.port, 'POST', '/v1/responses', { input: 'x', max_output_tokens: 200,
      text: { format: { type: 'json_schema', name: 'o', schema: { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'], additionalProperties: false } } } });
    if (model) {
      const text = fmt.json?.output?.find((o) => o.type === 'message')?.content?.[0]?.text;
      let v; try { v = JSON.parse(text); } catch { v = undefined; }
      check(fmt.status === 200 && Number.isInteger(v?.a) && Object.keys(v).length === 1, 'text.format json_schema: the schema\'s JSON', `${fmt.status} ${fmt.body.slice(0, 300)}`);
    } else check(fmt.status === 400 && /constrained/.test(fmt.body), 'text.format on the fake: refused', `${fmt.status} ${fmt.body.slice(0, 200)}`);
  }
  for (const [name, body, re] of bad) {
    const res = await request(srv.port, 'POST', '/v1/responses', body);
    check(res.status >= 400 && res.status < 500 && re.test(res.body) && res.json?.error?.message, `hostile: ${name} -> 4xx`, `${res.status} ${res.body.slice(0, 200)}`);
  }
  check((await request(srv.port, 'POST', '/v1/responses', '{"input":')).status === 400, 'truncated JSON body 400');
  check((await request(srv.port, 'GET', '/v1/responses')).status === 405, 'GET /v1/responses 405');

  // ---- a client that leaves mid-stream: the job is cancelled, nothing leaks
  await new Promise((resolve) => {
    const data = JSON.stringify({ input: 'R_SLOW', stream: true });
    const req = http.request({ host: '127.0.0.1', port: srv.port, method: 'POST', path: '/v1/responses',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      res.once('data', () => { req.destroy(); resolve(); });
    });
    req.on('error', () => resolve());
    req.write(data);
    req.end();
  });
  const m1 = await metricsWhenIdle(srv.port);
  check(m1['cairn_running'] === 0 && m1['cairn_kv_blocks{state="used"}'] === m0['cairn_kv_blocks{state="used"}'], 'disconnect mid-stream frees the request and its KV',
        { before: m0['cairn_kv_blocks{state="used"}'], after: m1['cairn_kv_blocks{state="used"}'], running: m1['cairn_running'] });
  const mr = await metrics(srv.port);
  check(mr['cairn_requests_total{endpoint="/v1/responses",status="200"}'] > 5 && mr['cairn_requests_total{endpoint="/v1/responses",status="400"}'] > 20, 'metrics count /v1/responses');
  check((await request(srv.port, 'GET', '/health')).status === 200, 'server alive at the end');

  await srv.stop();
  checkCleanStderr(srv);
  process.exit(summary('server/responses'));
}

main().catch((e) => { console.error('FAIL', e); process.exit(1); });
