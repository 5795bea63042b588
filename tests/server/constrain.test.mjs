// Constrained decoding through the server, with the official OpenAI SDK: response_format
// json_schema (create and parse()), json_object, the vLLM fields (guided_json, guided_regex,
// guided_choice, structured_outputs) and llama.cpp's grammar / json_schema, on a real model
// (CAIRN_TEST_MODEL, default models/default on the cpu backend) sampled at temperature 1 with
// several seeds; every output validated independently (ajv for schemas, RegExp for the rest).
// Strict tools beside response_format: calls or the format. Bad input: an unsupported keyword, a
// max_tokens too small, two constraints: 400s that say so.
import OpenAI from 'openai';
import Ajv2020 from '../text/node_modules/ajv/dist/2020.js';
import addFormats from '../text/node_modules/ajv-formats/dist/index.js';
import { check, startServer, summary, request } from './lib.mjs';

const model = process.env.CAIRN_TEST_MODEL || 'models/default';
const SEEDS = Number(process.env.CONSTRAIN_SEEDS || 4);
const ajv = new Ajv2020({ strict: false });
addFormats(ajv);

const srv = await startServer([model, ...(process.env.LOAD_ARGS || '--backend cpu --threads 2').split(' ').filter(Boolean)]);
const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
const messages = [{ role: 'user', content: 'Describe a city as JSON.' }];

const schemas = {
  city: {
    type: 'object', additionalProperties: false, required: ['name', 'population', 'tags', 'capital'],
    properties: {
      name: { type: 'string', maxLength: 20 },
      population: { type: 'integer', minimum: 0 },
      tags: { type: 'array', items: { enum: ['old', 'new', 'big'] }, maxItems: 3 },
      capital: { type: 'boolean' },
    },
  },
  nested: {
    type: 'object', required: ['items'], additionalProperties: false,
    properties: { items: { type: 'array', minItems: 1, maxItems: 2, items: { $ref: '#/$defs/item' } } },
    $defs: { item: { type: 'object', required: ['id', 'kind'], additionalProperties: false,
      properties: { id: { type: 'integer' }, kind: { anyOf: [{ const: 'a' }, { type: 'number' }] } } } },
  },
};

let n = 0;
async function validSchema(name, schema, content, what) {
  n++;
  let v;
  try { v = JSON.parse(content); } catch (e) { return check(false, `${what}: output is JSON`, content); }
  const validate = ajv.compile(schema);
  check(validate(v), `${what}: ajv-valid under ${name}`, { content, errors: validate.errors });
}

for (const [name, schema] of Object.entries(schemas)) {
  for (let seed = 0; seed < SEEDS; seed++) {
    const r = await client.chat.completions.create({
      model: 'default', messages, temperature: 1, seed, max_tokens: 120,
      response_format: { type: 'json_schema', json_schema: { name, schema, strict: seed % 2 === 0 } },
    });
    check(r.choices[0].finish_reason === 'stop', `json_schema ${name} seed ${seed}: finish stop`, r.choices[0].finish_reason);
    await validSchema(name, schema, r.choices[0].message.content, `json_schema ${name} seed ${seed}`);
  }
}

// parse(): the SDK parses the content and fails on finish_reason length
for (let seed = 0; seed < SEEDS; seed++) {
  const r = await client.beta.chat.completions.parse({
    model: 'default', messages, temperature: 1, seed, max_tokens: 100,
    response_format: { type: 'json_schema', json_schema: { name: 'city', schema: schemas.city, strict: true } },
  });
  const p = r.choices[0].message.parsed;
  check(p && ajv.validate(schemas.city, p), `parse() seed ${seed}: parsed object is valid`, r.choices[0].message.content);
}

// streaming: the concatenated deltas are the constrained output
{
  const s = await client.chat.completions.create({
    model: 'default', messages, temperature: 1, seed: 7, max_tokens: 120, stream: true,
    response_format: { type: 'json_schema', json_schema: { name: 'nested', schema: schemas.nested } },
  });
  let text = '';
  for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
  await validSchema('nested', schemas.nested, text, 'stream json_schema');
}

// /v1/responses text.format (what OpenAI Agents' outputType and responses.parse() send): the same
// constraint; a bad schema is a 400 that names text.format
for (let seed = 0; seed < 2; seed++) {
  const r = await client.responses.create({ model: 'default', input: 'Describe a city as JSON.', temperature: 1, max_output_tokens: 120,
    text: { format: { type: 'json_schema', name: 'city', schema: schemas.city, strict: true } }, seed });
  check(r.status === 'completed', `responses text.format seed ${seed}: completed`, r.status);
  await validSchema('city', schemas.city, r.output_text, `responses text.format seed ${seed}`);
}
{
  const r = await client.responses.create({ model: 'default', input: 'Any JSON object.', temperature: 1, seed: 3, max_output_tokens: 60, text: { format: { type: 'json_object' } } });
  let v; try { v = JSON.parse(r.output_text); } catch { v = undefined; }
  check(v && typeof v === 'object' && !Array.isArray(v), 'responses text.format json_object: an object', r.output_text);
  const bad = await request(srv.port, 'POST', '/v1/responses', { model: 'default', input: 'x',
    text: { format: { type: 'json_schema', name: 'x', schema: { type: 'array', uniqueItems: true } } } });
  check(bad.status === 400 && /^text\.format/.test(bad.json?.error?.param ?? '') && /uniqueItems/.test(bad.body), 'responses text.format: unsupported keyword is a 400 naming text.format', bad.body);
}

// json_object: any object
for (let seed = 0; seed < SEEDS; seed++) {
  const r = await client.chat.completions.create({ model: 'default', messages, temperature: 1, seed, max_tokens: 60,
    response_format: { type: 'json_object' } });
  const c = r.choices[0].message.content;
  let v; try { v = JSON.parse(c); } catch { v = undefined; }
  check(v && typeof v === 'object' && !Array.isArray(v), `json_object seed ${seed}: an object`, c);
}

// vLLM and llama.cpp spellings
const extra = [
  ['guided_regex', { guided_regex: '[a-z]{3,8}-[0-9]{2}' }, (s) => /^[a-z]{3,8}-[0-9]{2}$/.test(s)],
  ['guided_choice', { guided_choice: ['red', 'green', 'blue "x"'] }, (s) => ['red', 'green', 'blue "x"'].includes(s)],
  ['structured_outputs.regex', { structured_outputs: { regex: '(yes|no)' } }, (s) => /^(yes|no)$/.test(s)],
  ['grammar', { grammar: 'root ::= "(" [0-9]+ ("," [0-9]+)* ")"' }, (s) => /^\([0-9]+(,[0-9]+)*\)$/.test(s)],
  ['guided_json', { guided_json: schemas.city }, (s) => { try { return ajv.validate(schemas.city, JSON.parse(s)); } catch { return false; } }],
  ['guided_json string', { guided_json: JSON.stringify(schemas.nested) }, (s) => { try { return ajv.validate(schemas.nested, JSON.parse(s)); } catch { return false; } }],
  ['json_schema (llama.cpp)', { json_schema: schemas.nested }, (s) => { try { return ajv.validate(schemas.nested, JSON.parse(s)); } catch { return false; } }],
];
for (const [what, fields, ok] of extra) {
  for (let seed = 0; seed < SEEDS; seed++) {
    const r = await client.chat.completions.create({ model: 'default', messages, temperature: 1, seed, max_tokens: 80, ...fields });
    check(ok(r.choices[0].message.content), `${what} seed ${seed}`, r.choices[0].message.content);
  }
}
// completions too
{
  const r = await client.completions.create({ model: 'default', prompt: 'The answer:', temperature: 1, seed: 3, max_tokens: 30,
    guided_regex: '(true|false)' });
  check(/^(true|false)$/.test(r.choices[0].text), 'completions guided_regex', r.choices[0].text);
}

// forced tool calls through the Hermes envelope: tool_choice required / named,
// parallel_tool_calls false; Anthropic any / tool. Arguments validate against each tool's parameters.
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', additionalProperties: false, required: ['city', 'unit'],
    properties: { city: { type: 'string', maxLength: 16 }, unit: { enum: ['c', 'f'] } } } } },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', required: ['a', 'b'], additionalProperties: false,
    properties: { a: { type: 'integer' }, b: { type: 'integer' } } } } },
];
const paramsOf = Object.fromEntries(TOOLS.map((t) => [t.function.name, t.function.parameters]));
const FAMILY_TOOLS = [...TOOLS,
  { type: 'function', function: { name: 'write_file', parameters: { type: 'object', additionalProperties: false, required: ['path', 'content'],
    properties: {
      path: { type: 'string', pattern: '^[a-z/<]{1,20}\\.txt$' }, content: { type: 'string' }, mode: { enum: ['w', 'a</b'] },
      lines: { type: 'array', items: { type: 'integer' }, maxItems: 3 }, note: { type: ['string', 'null'], maxLength: 10 },
      opts: { type: 'object', properties: { force: { type: 'boolean' }, tag: { type: 'string' } }, required: ['force'], additionalProperties: false },
      when: { type: 'string', format: 'date' }, level: { type: 'string', enum: ['lo', 'hi', 'x</parameter>'] } } } } },
  { type: 'function', function: { name: 'ping', parameters: { type: 'object', properties: {} } } },
];
const familyParams = Object.fromEntries(FAMILY_TOOLS.map((t) => [t.function.name, t.function.parameters]));
// tool_choice auto with strict tools: the model may answer in text, but any call it makes is valid.
// The marker token is biased up (+100) so that some seeds call; every output is either text without
// calls or valid calls.
async function strictAuto(port, family, c) {
  const tok = await request(port, 'POST', '/tokenize', { prompt: '<tool_call>', add_special_tokens: false });
  const ids = JSON.parse(tok.body).tokens;
  const strictTools = FAMILY_TOOLS.map((t) => ({ ...t, function: { ...t.function, strict: true } }));
  let calls = 0, texts = 0;
  for (let seed = 0; seed < 2 * SEEDS; seed++) {
    const r = await c.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'Write a file.' }],
      tools: strictTools, temperature: 1, seed, max_tokens: 220,
      ...(ids.length === 1 && seed % 2 === 0 ? { logit_bias: { [ids[0]]: 100 } } : {}) });
    const ch = r.choices[0];
    const tag = `${family} strict auto seed ${seed}`;
    if (ch.message.tool_calls?.length) {
      calls++;
      check(ch.finish_reason === 'tool_calls', `${tag}: finish tool_calls`, ch);
      for (const tc of ch.message.tool_calls) {
        let args; try { args = JSON.parse(tc.function.arguments); } catch { args = undefined; }
        check(familyParams[tc.function.name] && ajv.validate(familyParams[tc.function.name], args), `${tag}: valid call`, { tc, errors: ajv.errors });
      }
    } else {
      texts++;
      check(typeof ch.message.content === 'string', `${tag}: text`, ch);
    }
  }
  console.error(`  ${family} strict auto: ${calls} outputs with calls, ${texts} text only`);
  return calls;
}
// Strict tools beside response_format: the answer is either valid calls (no text around them) or
// valid JSON of the format, never anything else. Even seeds bias the call marker up (+100), odd
// seeds '{' (Hermes: a call cannot start with it, so the format's JSON follows).
async function strictBesideFormat(port, family, c) {
  const single = async (text) => {
    const ids = JSON.parse((await request(port, 'POST', '/tokenize', { prompt: text, add_special_tokens: false })).body).tokens;
    return ids.length === 1 ? ids[0] : undefined;
  };
  const marker = await single('<tool_call>'), brace = await single('{');
  const strictTools = FAMILY_TOOLS.map((t) => ({ ...t, function: { ...t.function, strict: true } }));
  let calls = 0, formats = 0;
  for (let seed = 0; seed < 2 * SEEDS; seed++) {
    const r = await c.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'A city, or write a file.' }],
      tools: strictTools, temperature: 1, seed, max_tokens: 220,
      response_format: { type: 'json_schema', json_schema: { name: 'city', schema: schemas.city, strict: true } },
      ...((seed % 2 ? brace : marker) !== undefined ? { logit_bias: { [seed % 2 ? brace : marker]: 100 } } : {}) });
    const ch = r.choices[0];
    const tag = `${family} strict tools + response_format seed ${seed}`;
    if (ch.message.tool_calls?.length) {
      calls++;
      check(ch.finish_reason === 'tool_calls' && !ch.message.content, `${tag}: calls only`, ch);
      for (const tc of ch.message.tool_calls) {
        let args; try { args = JSON.parse(tc.function.arguments); } catch { args = undefined; }
        check(familyParams[tc.function.name] && ajv.validate(familyParams[tc.function.name], args), `${tag}: valid call`, { tc, errors: ajv.errors });
      }
    } else {
      formats++;
      check(ch.finish_reason === 'stop', `${tag}: finish stop`, ch.finish_reason);
      await validSchema('city', schemas.city, ch.message.content, tag);
    }
  }
  console.error(`  ${family} strict tools + response_format: ${calls} outputs with calls, ${formats} of the format`);
  return { calls, formats };
}
function validCalls(calls, what, { only, max } = {}) {
  if (!check(Array.isArray(calls) && calls.length >= 1, `${what}: a tool call`, calls)) return;
  if (max) check(calls.length <= max, `${what}: at most ${max} call(s)`, calls.length);
  for (const c of calls) {
    const name = c.function?.name ?? c.name;
    let args = c.function ? undefined : c.input;
    if (c.function) { try { args = JSON.parse(c.function.arguments); } catch { args = undefined; } }
    check(paramsOf[name] && (!only || name === only), `${what}: tool ${name}`, c);
    if (paramsOf[name]) check(ajv.validate(paramsOf[name], args), `${what}: arguments valid`, { name, args, errors: ajv.errors });
  }
}
for (let seed = 0; seed < SEEDS; seed++) {
  const req = { model: 'default', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: TOOLS, temperature: 1, seed, max_tokens: 120 };
  const r1 = await client.chat.completions.create({ ...req, tool_choice: 'required' });
  check(r1.choices[0].finish_reason === 'tool_calls', `required seed ${seed}: finish tool_calls`, r1.choices[0]);
  validCalls(r1.choices[0].message.tool_calls, `required seed ${seed}`);
  const r2 = await client.chat.completions.create({ ...req, tool_choice: { type: 'function', function: { name: 'add' } } });
  validCalls(r2.choices[0].message.tool_calls, `named seed ${seed}`, { only: 'add', max: 1 });
  const r3 = await client.chat.completions.create({ ...req, tool_choice: 'required', parallel_tool_calls: false });
  validCalls(r3.choices[0].message.tool_calls, `parallel_tool_calls false seed ${seed}`, { max: 1 });
}
{
  const { default: Anthropic } = await import('@anthropic-ai/sdk');
  const an = new Anthropic({ baseURL: srv.url, apiKey: 'none', maxRetries: 0 });
  const atools = TOOLS.map((t) => ({ name: t.function.name, input_schema: t.function.parameters }));
  for (let seed = 0; seed < 2; seed++) {
    const base = { model: 'default', max_tokens: 120, temperature: 1, tools: atools, messages: [{ role: 'user', content: 'Add 2 and 3' }] };
    const a1 = await an.messages.create({ ...base, tool_choice: { type: 'any' } });
    validCalls(a1.content.filter((b) => b.type === 'tool_use'), `anthropic any seed ${seed}`);
    check(a1.stop_reason === 'tool_use', `anthropic any seed ${seed}: stop_reason tool_use`, a1.stop_reason);
    const a2 = await an.messages.create({ ...base, tool_choice: { type: 'tool', name: 'get_weather' } });
    validCalls(a2.content.filter((b) => b.type === 'tool_use'), `anthropic tool seed ${seed}`, { only: 'get_weather', max: 1 });
  }
}
// Valid within the budget: at exactly the max_tokens the 400 names as the least, every seed still
// closes the output (the mask leaves only the shortest completion once that is all that fits).
for (const [name, schema] of Object.entries(schemas)) {
  const r0 = await request(srv.port, 'POST', '/v1/chat/completions', { model: 'default', messages, max_tokens: 3,
    response_format: { type: 'json_schema', json_schema: { name, schema } } });
  const need = Number((/needs (\d+) tokens/.exec(r0.body) || [])[1]);
  if (!check(r0.status === 400 && need > 3, `${name}: the 400 names the least max_tokens`, r0.body)) continue;
  const r1 = await request(srv.port, 'POST', '/v1/chat/completions', { model: 'default', messages, max_tokens: need - 1,
    response_format: { type: 'json_schema', json_schema: { name, schema } } });
  check(r1.status === 400, `${name}: max_tokens ${need - 1} refused`, r1.status);
  for (let seed = 0; seed < SEEDS; seed++)
    for (const extra of [0, 4]) {
      const r = await client.chat.completions.create({ model: 'default', messages, temperature: 1, seed, max_tokens: need + extra,
        response_format: { type: 'json_schema', json_schema: { name, schema } } });
      check(r.choices[0].finish_reason === 'stop', `${name} at max_tokens ${need + extra} seed ${seed}: finish stop`, r.choices[0]);
      await validSchema(name, schema, r.choices[0].message.content, `${name} at max_tokens ${need + extra} seed ${seed}`);
    }
}

// The same for a forced call's long fixed markup (Hermes: '<tool_call>' is 11 bytes, one token):
// the count is a safe bound, not the fewest tokens: one token per byte of the shortest output (every
// byte is a token of its own), the bound the engine's budget rule closes under, plus the stop.
{
  const body = { model: 'default', messages: [{ role: 'user', content: 'Add 2 and 3' }], tools: [TOOLS[1]], tool_choice: 'required' };
  const r0 = await request(srv.port, 'POST', '/v1/chat/completions', { ...body, max_tokens: 3 });
  const need = Number((/needs (\d+) tokens/.exec(r0.body) || [])[1]);
  if (check(r0.status === 400 && need > 40, 'forced call: the 400 names the least max_tokens', r0.body)) {
    let used = 0;
    for (let seed = 0; seed < SEEDS; seed++) {
      const r = await client.chat.completions.create({ ...body, temperature: 1, seed, max_tokens: need });
      check(r.choices[0].finish_reason === 'tool_calls', `forced call at max_tokens ${need} seed ${seed}: finish tool_calls`, r.choices[0]);
      validCalls(r.choices[0].message.tool_calls, `forced call at max_tokens ${need} seed ${seed}`, { only: 'add' });
      used = Math.max(used, r.usage.completion_tokens);
    }
    console.error(`  forced call: max_tokens ${need} asked (bytes of the shortest output + the stop), at most ${used} used`);
  }
}

// Responses API text.format (flat json_schema, json_object) and Anthropic structured outputs
// (output_config.format, and the beta's output_format)
for (let seed = 0; seed < SEEDS; seed++) {
  const r = await client.responses.create({ model: 'default', input: 'Describe a city as JSON.', store: false, temperature: 1, seed,
    max_output_tokens: 120, text: { format: { type: 'json_schema', name: 'city', schema: schemas.city, strict: true } } });
  check(r.status === 'completed', `responses text.format seed ${seed}: completed`, r.status);
  await validSchema('city', schemas.city, r.output_text, `responses text.format seed ${seed}`);
  const o = await client.responses.create({ model: 'default', input: 'JSON please', store: false, temperature: 1, seed,
    max_output_tokens: 60, text: { format: { type: 'json_object' } } });
  let v; try { v = JSON.parse(o.output_text); } catch { v = undefined; }
  check(v && typeof v === 'object' && !Array.isArray(v), `responses json_object seed ${seed}: an object`, o.output_text);
}
for (const [field, fmt] of [['output_config', { output_config: { format: { type: 'json_schema', schema: schemas.nested } } }],
  ['output_format', { output_format: { type: 'json_schema', schema: schemas.nested } }]]) {
  for (let seed = 0; seed < SEEDS; seed++) {
    const r = await request(srv.port, 'POST', '/v1/messages', { model: 'default', max_tokens: 120, temperature: 1,
      messages: [{ role: 'user', content: 'Items as JSON' }], ...fmt }, { 'anthropic-version': '2023-06-01' });
    const b = r.status === 200 ? JSON.parse(r.body) : {};
    check(b.stop_reason === 'end_turn', `anthropic ${field} seed ${seed}: end_turn`, r.body);
    await validSchema('nested', schemas.nested, (b.content || []).filter((c) => c.type === 'text').map((c) => c.text).join(''),
      `anthropic ${field} seed ${seed}`);
  }
}
{
  const r = await request(srv.port, 'POST', '/v1/responses', { model: 'default', input: 'x', store: false,
    text: { format: { type: 'json_schema', name: 'x', schema: { type: 'array', uniqueItems: true } } } });
  check(r.status === 400 && r.body.includes('uniqueItems') && r.body.includes('text.format'), 'responses: unsupported keyword named', r.body);
  const a = await request(srv.port, 'POST', '/v1/messages', { model: 'default', max_tokens: 50, messages: [{ role: 'user', content: 'x' }],
    output_config: { format: { type: 'json_schema', schema: { type: 'object', minProperties: 1 } } } }, { 'anthropic-version': '2023-06-01' });
  check(a.status === 400 && a.body.includes('minProperties'), 'anthropic: unsupported keyword named', a.body);
}

{
  const FAMILY_CALLS = await strictAuto(srv.port, 'hermes', client);
  check(FAMILY_CALLS > 0, 'hermes strict auto: the biased marker led to calls', FAMILY_CALLS);
  const both = await strictBesideFormat(srv.port, 'hermes', client);
  check(both.calls > 0 && both.formats > 0, 'hermes strict tools + response_format: both kinds of answer occur', both);
}
await expect400({ tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'nope', 'named tool not in tools');
await expect400({ tools: TOOLS, tool_choice: 'required', response_format: { type: 'json_object' } }, 'both', 'tool_choice + response_format');

// bad input: 400s that name the cause; the server keeps serving
async function expect400(body, needle, what) {
  const r = await request(srv.port, 'POST', '/v1/chat/completions', { model: 'default', messages, max_tokens: 50, ...body });
  check(r.status === 400 && r.body.includes(needle), `${what}: 400 mentioning '${needle}'`, `${r.status} ${r.body}`);
}
await expect400({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'array', uniqueItems: true } } } } } },
  'uniqueItems', 'unsupported keyword');
await expect400({ max_tokens: 5, response_format: { type: 'json_schema', json_schema: { name: 'city', schema: schemas.city } } },
  'max_tokens', 'max_tokens too small');
await expect400({ guided_regex: 'a', grammar: 'root ::= "a"' }, 'only one', 'two constraints');
await expect400({ grammar: 'root ::= ( "a" ' }, 'grammar', 'GBNF syntax error');
await expect400({ guided_regex: '(a' }, 'guided_regex', 'regex syntax error');
await expect400({ response_format: { type: 'xml' } }, 'xml', 'unknown response_format type');
{
  const r = await client.chat.completions.create({ model: 'default', messages, temperature: 1, seed: 1, max_tokens: 10 });
  check(r.choices[0].message.content !== undefined, 'still serving after the 400s');
}

await srv.stop();

// Forced tool calls in each family's own markup (--tool-parser picks the family on the default
// model): the server's parser must read every constrained call back as a tool call, typed as the
// schema says (Qwen3-Coder XML: raw text for strings, JSON otherwise), and ajv must accept the
// arguments. A random-weight model at temperature 1 writes the longest, oddest values it can.
for (const family of ['qwen3_coder', 'llama3', 'mistral', 'deepseek_v3']) {
  const fsrv = await startServer([model, '--tool-parser', family,
    ...(process.env.LOAD_ARGS || '--backend cpu --threads 2').split(' ').filter(Boolean)]);
  const fc = new OpenAI({ baseURL: `${fsrv.url}/v1`, apiKey: 'none', maxRetries: 0 });
  const cases = [['required', 'required', undefined], ['named write_file', { type: 'function', function: { name: 'write_file' } }, 'write_file'],
    ['parallel false', 'required', undefined]];
  for (let seed = 0; seed < SEEDS; seed++) {
    for (const [what, tool_choice, only] of cases) {
      const r = await fc.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'Write a file.' }],
        tools: FAMILY_TOOLS, tool_choice, temperature: 1, seed, max_tokens: 220,
        ...(what === 'parallel false' ? { parallel_tool_calls: false } : {}) });
      const ch = r.choices[0];
      const tag = `${family} ${what} seed ${seed}`;
      check(ch.finish_reason === 'tool_calls', `${tag}: finish tool_calls`, ch);
      const calls = ch.message.tool_calls;
      if (!check(Array.isArray(calls) && calls.length >= 1, `${tag}: a tool call`, ch.message)) continue;
      if (only || what === 'parallel false') check(calls.length === 1, `${tag}: one call`, calls.length);
      check(!ch.message.content, `${tag}: no stray content`, ch.message.content);
      for (const c of calls) {
        let args; try { args = JSON.parse(c.function.arguments); } catch { args = undefined; }
        check(familyParams[c.function.name] && (!only || c.function.name === only), `${tag}: tool ${c.function.name}`, c);
        if (familyParams[c.function.name])
          check(ajv.validate(familyParams[c.function.name], args), `${tag}: arguments valid`, { args, errors: ajv.errors, raw: c.function.arguments });
      }
    }
  }
  await strictAuto(fsrv.port, family, fc);
  await strictBesideFormat(fsrv.port, family, fc);
  await fsrv.stop();
}

console.error(`constrain: ${n} schema outputs validated`);
process.exit(summary('constrain'));
