// What agent CLIs send (issue 18): Claude Code's /v1/messages shapes (system turns mid-conversation,
// empty content lists, server tools, images in history), Anthropic usage arithmetic, max_tokens as
// a cap, several served names and '*', the Anthropic-shaped model list. The built-in fake model
// with a small context (--max-model-len) and scripted outputs; the official SDKs and raw HTTP.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { check, summary, startServer, request, sse, checkCleanStderr, writeScript } from './lib.mjs';

const SCRIPT = [
  { match: 'SYSMARK', output: 'saw the system turn' },
  { match: 'SCRIPT_ANSWER', output: 'It is sunny.' },
  { match: 'SCRIPT_HERMES', output: 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' },
  { match: 'SCRIPT_TWO_CALLS', output: 'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\nDone.' },
  // a whole agent turn: the entry whose marker is latest in the prompt answers
  { match: 'LAST_ASK', last: true, output: 'asked for the tool' },
  { match: 'LAST_RESULT', last: true, output: 'answered after the tool' },
];
const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
const ANTH_TOOLS = [{ name: 'get_weather', description: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];
const PNG = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } };
const N_CTX = 1024;

const scriptFile = writeScript('agents', SCRIPT);

async function main() {
  const srv = await startServer(['--fake', '--test-script', scriptFile, '--max-model-len', String(N_CTX),
    '--served-model-name', 'cairn-test', '--served-model-name', 'alias-a,*']);
  const oa = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
  const an = new Anthropic({ baseURL: srv.url, apiKey: 'none', maxRetries: 0 });

  // ---- names: several, the first is the one responses carry; '*' answers to any id
  const models = await oa.models.list();
  check(models.data.map((m) => m.id).join(',') === 'cairn-test,alias-a', 'models lists every served name but *', models.data);
  check(models.data.every((m) => m.max_model_len === N_CTX), 'models report the context, never 0', models.data);
  check((await oa.models.retrieve('claude-haiku-4-5')).id === 'claude-haiku-4-5', 'wildcard: any id is retrievable');
  const am = await request(srv.port, 'GET', '/v1/models', undefined, { 'anthropic-version': '2023-06-01', 'x-api-key': 'k' });
  check(am.status === 200 && am.json.data[0].type === 'model' && am.json.data[0].id === 'cairn-test' && am.json.has_more === false &&
        am.json.first_id === 'cairn-test' && am.json.last_id === 'alias-a' && /^\d{4}-\d\d-\d\dT/.test(am.json.data[0].created_at),
        'anthropic-shaped model list with anthropic-version', am.json);
  const anList = await an.models.list();
  check(anList.data.length === 2 && anList.data[0].display_name === 'cairn-test', 'anthropic SDK models.list', anList.data);
  const side = await an.messages.create({ model: 'claude-3-5-haiku-20241022', max_tokens: 5, messages: [{ role: 'user', content: 'side request' }] });
  check(side.type === 'message', 'wildcard: a side request with another model id is answered');
  const side2 = await oa.chat.completions.create({ model: 'alias-a', max_tokens: 3, messages: [{ role: 'user', content: 'x' }] });
  check(side2.choices.length === 1, 'second served name answers');

  // ---- Claude Code's /v1/messages shapes
  // its billing line (a hash of the conversation, first in `system`) is dropped, so sessions share
  // the prefix cache: the count is that of the system prompt without it, as a block or a string
  const count = (system) => an.messages.countTokens({ model: 'cairn-test', system, messages: [{ role: 'user', content: 'hi' }] }).then((c) => c.input_tokens);
  const plain = await count([{ type: 'text', text: 'You are Claude Code.' }]);
  check(await count([{ type: 'text', text: 'x-anthropic-billing-header: cc_version=2.1.332.0b8; cc_entrypoint=sdk-cli; cch=3f2a1;' },
    { type: 'text', text: 'You are Claude Code.' }]) === plain, 'billing line block dropped from system');
  check(await count('x-anthropic-billing-header: cc_version=2.1.332.7c1; cc_entrypoint=cli;\nYou are Claude Code.') === plain, 'billing line dropped from a string system');
  check(await count([{ type: 'text', text: 'You are Claude Code. x-anthropic-billing-header: kept' }]) > plain, 'the same text elsewhere is kept');
  const sysMid = await an.messages.create({ model: 'cairn-test', max_tokens: 50, system: [{ type: 'text', text: 'You are Claude Code.', cache_control: { type: 'ephemeral' } }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hello', cache_control: { type: 'ephemeral' } }] },
      { role: 'system', content: '<env>SYSMARK cwd=/tmp</env>' },
      { role: 'user', content: 'go on' }],
    metadata: { user_id: 'u1' } });
  check(sysMid.content[0]?.text === 'saw the system turn', 'a mid-conversation system turn is rendered into the prompt', sysMid.content);
  const sysBlocks = await an.messages.create({ max_tokens: 50, model: 'cairn-test',
    messages: [{ role: 'user', content: 'q' }, { role: 'system', content: [{ type: 'text', text: 'SYSMARK as blocks' }] }, { role: 'user', content: 'q2' }] });
  check(sysBlocks.content[0]?.text === 'saw the system turn', 'system turn with block content', sysBlocks.content);
  const folded = await request(srv.port, 'POST', '/v1/messages', { max_tokens: 50, chat_template_kwargs: { fake_system_first_only: true }, system: 'You are Claude Code.',
    messages: [{ role: 'user', content: 'hello' }, { role: 'system', content: '<env>SYSMARK</env>' }, { role: 'user', content: 'go on' }] });
  check(folded.status === 200 && folded.json.content[0]?.text === 'saw the system turn' && /folding the system turns into one/.test(srv.stderr()),
        'a template that refuses late system turns gets them folded into the first', folded.body.slice(0, 300));
  const empty = await request(srv.port, 'POST', '/v1/messages', { max_tokens: 5, messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: [] }, { role: 'user', content: 'b' }] });
  check(empty.status === 200, 'empty content list tolerated', empty.body.slice(0, 200));
  const serverTools = await request(srv.port, 'POST', '/v1/messages', { max_tokens: 200, messages: [{ role: 'user', content: 'SCRIPT_HERMES' }],
    tools: [...ANTH_TOOLS, { type: 'web_search_20250305', name: 'web_search', max_uses: 5 }] });
  check(serverTools.status === 200 && serverTools.json.stop_reason === 'tool_use' && serverTools.json.content.at(-1).name === 'get_weather',
        'server tool types in tools are left out, the rest works', serverTools.body.slice(0, 300));
  check(/leaving out the server tool of type 'web_search_20250305'/.test(srv.stderr()), 'server tool logged');
  const badTool = await request(srv.port, 'POST', '/v1/messages', { max_tokens: 5, messages: [{ role: 'user', content: 'a' }], tools: [{ type: 'custom', name: 'x' }] });
  check(badTool.status === 400 && /input_schema/.test(badTool.body), 'custom tool without input_schema 400', badTool.body);

  // ---- a whole agent turn: tool call, tool result (with an image: a Read of a PNG), answer
  const turn1 = await an.messages.create({ model: 'cairn-test', max_tokens: 200, tools: ANTH_TOOLS, messages: [{ role: 'user', content: 'SCRIPT_HERMES' }] });
  const use = turn1.content.find((b) => b.type === 'tool_use');
  check(turn1.stop_reason === 'tool_use' && use?.input?.city === 'Paris', 'agent turn 1: tool_use', turn1.content);
  const turn2 = await an.messages.create({ model: 'cairn-test', max_tokens: 200, tools: ANTH_TOOLS, messages: [
    { role: 'user', content: [PNG, { type: 'text', text: 'what is this screenshot' }] },
    { role: 'assistant', content: [{ type: 'text', text: 'an image' }] },
    { role: 'user', content: 'SCRIPT_HERMES' }, { role: 'assistant', content: turn1.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'SCRIPT_ANSWER' }, PNG] }] }] });
  check(turn2.content[0]?.text === 'It is sunny.' && turn2.stop_reason === 'end_turn', 'agent turn 2 with images in history answered', turn2.content);
  check(/'image' content part was replaced by a placeholder/.test(srv.stderr()), 'image placeholder logged');
  const imgOnly = await request(srv.port, 'POST', '/v1/messages', { max_tokens: 5, messages: [{ role: 'user', content: [PNG] }] });
  check(imgOnly.status === 400 && /text only/.test(imgOnly.body), 'newest user turn of an image alone: 400', imgOnly.body);
  const imgOai = await request(srv.port, 'POST', '/v1/chat/completions', { max_tokens: 5, messages: [
    { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] },
    { role: 'assistant', content: 'ok' }, { role: 'user', content: [{ type: 'text', text: 'and now?' }] }] });
  check(imgOai.status === 200, 'openai: image in history degrades to a placeholder', imgOai.body.slice(0, 200));
  const docHist = await request(srv.port, 'POST', '/v1/messages', { max_tokens: 5, messages: [
    { role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x' } }, { type: 'text', text: 'read it' }] }] });
  check(docHist.status === 200, 'document with text in the newest turn: placeholder, answered', docHist.body.slice(0, 200));

  // ---- usage with Anthropic's semantics: input + cache_read + cache_creation = the prompt
  const msgs = [{ role: 'user', content: 'usage arithmetic please' }];
  const ct = await an.messages.countTokens({ model: 'cairn-test', messages: msgs });
  const u1 = await an.messages.create({ model: 'cairn-test', max_tokens: 4, messages: msgs });
  const tot = (u) => u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
  check(tot(u1.usage) === ct.input_tokens && u1.usage.output_tokens === 4 && typeof u1.usage.cache_creation_input_tokens === 'number', 'usage adds up to the prompt', { ct, u: u1.usage });
  const raw = await sse(srv.port, '/v1/messages', { max_tokens: 4, stream: true, messages: msgs });
  const start = JSON.parse(raw.events.find((e) => e.event === 'message_start').data).message.usage;
  const delta = JSON.parse(raw.events.find((e) => e.event === 'message_delta').data).usage;
  check(tot(start) === ct.input_tokens && start.output_tokens === 0 && 'cache_read_input_tokens' in start, 'message_start usage carries the cache split', start);
  check(tot(delta) === ct.input_tokens && delta.output_tokens === 4, 'message_delta usage', delta);

  // ---- max_tokens is a cap: 32000 on a 1024-token context is cut to what fits
  // (raw HTTP: the SDK itself refuses a non-streaming call with such a max_tokens)
  const cap = (await request(srv.port, 'POST', '/v1/messages', { model: 'cairn-test', max_tokens: 32000, messages: [{ role: 'user', content: 'long' }] })).json;
  check(cap.stop_reason === 'max_tokens' && tot(cap.usage) + cap.usage.output_tokens === N_CTX, 'anthropic max_tokens 32000 clamped to the context', cap.usage);
  const capOai = await oa.chat.completions.create({ max_completion_tokens: 32768, messages: [{ role: 'user', content: 'long' }] });
  check(capOai.choices[0].finish_reason === 'length' && capOai.usage.prompt_tokens + capOai.usage.completion_tokens === N_CTX, 'openai max_completion_tokens clamped, finish length', capOai.usage);
  const capStream = await sse(srv.port, '/v1/chat/completions', { max_tokens: 32768, stream: true, messages: [{ role: 'user', content: 'SCRIPT_ANSWER' }] });
  const capText = capStream.events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data).choices[0]?.delta?.content || '').join('');
  check(capStream.status === 200 && capText === 'It is sunny.', 'a short answer under a huge max_tokens is whole', capText);
  const tooLong = await request(srv.port, 'POST', '/v1/messages', { max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(N_CTX * 2) }] });
  check(tooLong.status === 400 && /maximum context length is 1024 tokens/.test(tooLong.body) && /prompt has \d+ tokens/.test(tooLong.body), 'a prompt alone over the context: 400 with counts', tooLong.body);

  // ---- documented fields: implemented or refused
  const two = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'SCRIPT_TWO_CALLS' }], tools: TOOLS, max_tokens: 300 });
  check(two.choices[0].message.tool_calls?.length === 2, 'two parallel calls by default', two.choices[0].message);
  const one = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'SCRIPT_TWO_CALLS' }], tools: TOOLS, max_tokens: 300, parallel_tool_calls: false });
  check(one.choices[0].message.tool_calls?.length === 1 && one.choices[0].message.tool_calls[0].function.arguments.includes('Paris') &&
        one.choices[0].finish_reason === 'tool_calls' && !/Done/.test(one.choices[0].message.content || ''), 'parallel_tool_calls false: one call, nothing after', one.choices[0]);
  const oneS = await sse(srv.port, '/v1/chat/completions', { messages: [{ role: 'user', content: 'SCRIPT_TWO_CALLS' }], tools: TOOLS, max_tokens: 300, parallel_tool_calls: false, stream: true });
  const oneSIdx = new Set(oneS.events.filter((e) => e.data !== '[DONE]').flatMap((e) => (JSON.parse(e.data).choices[0]?.delta?.tool_calls || []).map((t) => t.index)));
  check(oneSIdx.size === 1 && oneS.raw.includes('"finish_reason":"tool_calls"'), 'parallel_tool_calls false streaming', [...oneSIdx]);
  const anOne = await an.messages.create({ model: 'cairn-test', max_tokens: 300, tools: ANTH_TOOLS, tool_choice: { type: 'auto', disable_parallel_tool_use: true }, messages: [{ role: 'user', content: 'SCRIPT_TWO_CALLS' }] });
  check(anOne.content.filter((b) => b.type === 'tool_use').length === 1 && anOne.stop_reason === 'tool_use', 'disable_parallel_tool_use: one tool_use', anOne.content);
  const base0 = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'effort' }], max_tokens: 2 });
  const low = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'effort' }], max_tokens: 2, reasoning_effort: 'low' });
  const high = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'effort' }], max_tokens: 2, reasoning_effort: 'high' });
  check(low.usage.prompt_tokens > base0.usage.prompt_tokens && high.usage.prompt_tokens === base0.usage.prompt_tokens, 'reasoning_effort low turns thinking off in the template', [base0.usage, low.usage, high.usage]);
  const noGen = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'effort' }], max_tokens: 2, add_generation_prompt: false });
  check(noGen.usage.prompt_tokens < base0.usage.prompt_tokens, 'add_generation_prompt false renders no generation prompt', [noGen.usage, base0.usage]);
  const free0 = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'stop ids' }], max_tokens: 8, temperature: 0 });
  const firstTok = (await request(srv.port, 'POST', '/tokenize', { prompt: free0.choices[0].message.content.slice(0, 1) })).json.tokens.at(-1);
  const stopped = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'stop ids' }], max_tokens: 8, temperature: 0, stop_token_ids: [firstTok] });
  check(stopped.choices[0].finish_reason === 'stop' && stopped.usage.completion_tokens <= 1 && !stopped.choices[0].message.content, 'stop_token_ids end the output', [free0.choices[0].message.content, stopped.choices[0]]);
  const ign = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], max_tokens: 3, ignore_eos: true });
  check(ign.usage.completion_tokens === 3, 'ignore_eos accepted', ign.usage);
  const refused = [
    ['min_tokens over max_tokens', { min_tokens: 5 }, /min_tokens/], ['min_tokens negative', { min_tokens: -1 }, /min_tokens/],
    ['continue_final_message', { continue_final_message: true }, /continue_final_message/],
    ['reasoning_effort bogus', { reasoning_effort: 'max' }, /reasoning_effort/], ['reasoning_effort number', { reasoning_effort: 3 }, /reasoning_effort/],
    ['parallel_tool_calls string', { parallel_tool_calls: 'no' }, /parallel_tool_calls/], ['ignore_eos string', { ignore_eos: 'yes' }, /ignore_eos/],
    ['stop_token_ids not array', { stop_token_ids: 5 }, /stop_token_ids/], ['stop_token_ids out of range', { stop_token_ids: [1e9] }, /stop_token_ids/],
    ['stop_token_ids strings', { stop_token_ids: ['a'] }, /stop_token_ids/], ['add_generation_prompt number', { add_generation_prompt: 0 }, /add_generation_prompt/],
  ];
  for (const [name, extra, re] of refused) {
    const res = await request(srv.port, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 3, ...extra });
    check(res.status === 400 && re.test(res.body), `refused: ${name} -> 400`, res.body.slice(0, 200));
  }
  const minT = await oa.chat.completions.create({ messages: [{ role: 'user', content: 'stop ids' }], max_tokens: 8, temperature: 0, stop_token_ids: [firstTok], min_tokens: 4 });
  check(minT.usage.completion_tokens >= 4 && minT.choices[0].message.content.length >= 4, 'min_tokens: no stop id before 4 tokens', minT);
  const cmin = await request(srv.port, 'POST', '/v1/completions', { prompt: 'x', max_tokens: 3, min_tokens: 4 });
  check(cmin.status === 400 && /min_tokens/.test(cmin.body), 'completions: min_tokens over max_tokens 400', cmin.body);
  const cmin2 = await request(srv.port, 'POST', '/v1/completions', { prompt: 'x', max_tokens: 5, min_tokens: 5, stop_token_ids: [0, 1, 2, 3] });
  check(cmin2.status === 200 && cmin2.json.usage.completion_tokens === 5, 'completions: min_tokens honoured', cmin2.body);

  // ---- hostile shapes
  const cases = [
    ['system turn content a number', { max_tokens: 5, messages: [{ role: 'user', content: 'a' }, { role: 'system', content: 5 }] }, /content/],
    ['system turn with an image', { max_tokens: 5, messages: [{ role: 'user', content: 'a' }, { role: 'system', content: [{ type: 'bogus' }] }] }, /bogus/],
    ['image block in an assistant turn', { max_tokens: 5, messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: [PNG] }, { role: 'user', content: 'b' }] }, /image/],
    ['tools not an array', { max_tokens: 5, messages: [{ role: 'user', content: 'a' }], tools: { type: 'web_search_20250305' } }, /tools/],
    ['tool entry not an object', { max_tokens: 5, messages: [{ role: 'user', content: 'a' }], tools: [7] }, /tools/],
  ];
  for (const [name, body, re] of cases) {
    const res = await request(srv.port, 'POST', '/v1/messages', body);
    check(res.status === 400 && re.test(res.body), `hostile: ${name} -> 400`, res.body.slice(0, 200));
  }
  check((await request(srv.port, 'GET', '/health')).status === 200, 'server alive after the hostile cases');

  // ---- --test-script "last": a tool call, then the answer once the tool's result is the newest message
  const turn = (messages) => oa.chat.completions.create({ model: 'cairn-test', max_tokens: 60, messages }).then((r) => r.choices[0].message.content);
  check(await turn([{ role: 'user', content: 'LAST_ASK' }]) === 'asked for the tool', 'script last: the first turn');
  check(await turn([{ role: 'user', content: 'LAST_ASK' }, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: 'c1', content: 'LAST_RESULT' }])
    === 'answered after the tool', 'script last: the turn after the tool result (a tool message)');
  check(await turn([{ role: 'user', content: 'LAST_RESULT' }, { role: 'assistant', content: 'ok' }, { role: 'user', content: 'LAST_ASK again' }])
    === 'asked for the tool', 'script last: the newest marker wins, not the first entry');

  await srv.stop();
  checkCleanStderr(srv);
  process.exit(summary('server/agents'));
}

main().catch((e) => { console.error('FAIL', e); process.exit(1); });
