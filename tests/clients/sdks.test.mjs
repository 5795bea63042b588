// The SDKs and frameworks (pinned in package.json) with their default providers against one cairn
// serve with scripted outputs: what their users see. Streaming, tool calls (and the turn after the
// tool result), usage arithmetic, structured output: OpenAI chat/responses + parse(), Anthropic
// messages.stream, AI SDK generateText/generateObject/streamText (OpenAI's default Responses
// provider, the OpenAI-compatible one, Anthropic), LangChain withStructuredOutput (functionCalling,
// jsonMode, jsonSchema; and ChatAnthropic), OpenAI Agents JS with tools and outputType.
// The script bypasses the grammar a structured request compiles (constrain.test.mjs checks that
// enforcement); here the point is that each client accepts cairn's answers and requests.
import process from 'node:process';
// no tracing or telemetry whatever the caller's environment says (LangSmith, Agents' exporter)
process.env.LANGSMITH_TRACING = 'false';
process.env.LANGCHAIN_TRACING_V2 = 'false';
process.env.OPENAI_AGENTS_DISABLE_TRACING = '1';
globalThis.AI_SDK_LOG_WARNINGS = false;
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { generateText, generateObject, streamText, tool, stepCountIs, Output } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createAnthropic } from '@ai-sdk/anthropic';
import { ChatOpenAI } from '@langchain/openai';
import { ChatAnthropic } from '@langchain/anthropic';
import { Agent, run, tool as agentTool, setDefaultOpenAIClient, setTracingDisabled } from '@openai/agents';
import { check, serveScripted, hermesCall, SERVED, watchdog, finish } from './lib.mjs';

const PARIS = { city: 'Paris', temp_c: 21 };
const PARIS_JSON = JSON.stringify(PARIS);
const Weather = z.object({ city: z.string(), temp_c: z.number() });
const text = (t) => `${t}`;
// a long system prompt, so a repeated request has whole KV blocks to reuse (usage arithmetic)
const LONG_SYSTEM = 'You are a weather assistant. ' + 'Answer briefly and cite the station. '.repeat(40);

const SCRIPT = [
  // OpenAI SDK
  { match: 'OA_WEATHER_ASK', last: true, output: hermesCall('get_weather', { city: 'Paris' }) },
  { match: 'OA_RESULT_21C', last: true, output: text('It is 21 C in Paris.') },
  { match: 'OA_PARSE', output: PARIS_JSON },
  { match: 'OA_RESP_ASK', last: true, output: hermesCall('get_weather', { city: 'Paris' }) },
  { match: 'OA_RESP_RESULT', last: true, output: 'Responses: 21 C.' },
  { match: 'OA_RESP_PARSE', output: PARIS_JSON },
  // Anthropic SDK
  { match: 'AN_WEATHER_ASK', last: true, output: 'Let me check.\n' + hermesCall('get_weather', { city: 'Paris' }) },
  { match: 'AN_RESULT_21C', last: true, output: 'Anthropic: 21 C in Paris.' },
  { match: 'AN_USAGE', output: 'Usage answer.' },
  // AI SDK
  { match: 'AI_OA_ASK', last: true, output: hermesCall('get_weather', { city: 'Paris' }) },
  { match: 'AI_OA_RESULT', last: true, output: 'AI SDK (responses): 21 C.' },
  { match: 'AI_OBJECT', output: PARIS_JSON },
  { match: 'AI_OUTPUT_OBJECT', output: PARIS_JSON },
  { match: 'AI_STREAM', output: 'streamed from cairn' },
  { match: 'AI_AN_ASK', last: true, output: hermesCall('get_weather', { city: 'Paris' }) },
  { match: 'AI_AN_RESULT', last: true, output: 'AI SDK (anthropic): 21 C.' },
  // LangChain
  { match: 'LC_FUNCTION_CALLING', output: hermesCall('weather', PARIS) },
  { match: 'LC_JSON_MODE', output: PARIS_JSON },
  { match: 'LC_JSON_SCHEMA', output: PARIS_JSON },
  { match: 'LC_ANTHROPIC', output: hermesCall('weather', PARIS) },
  // Agents JS
  { match: 'AG_ASK', last: true, output: hermesCall('get_weather', { city: 'Paris' }) },
  { match: 'AG_RESULT_21', last: true, output: PARIS_JSON },
];

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function openaiSdk(url) {
  const oa = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120000 });
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
  const messages = [{ role: 'user', content: 'OA_WEATHER_ASK: weather in Paris?' }];
  const stream = await oa.chat.completions.create({ model: SERVED, messages, tools, stream: true, stream_options: { include_usage: true } });
  const calls = {}; let finish = null, usage = null, content = '';
  for await (const ch of stream) {
    if (ch.usage) usage = ch.usage;
    const c = ch.choices[0];
    if (!c) continue;
    content += c.delta?.content ?? '';
    for (const tc of c.delta?.tool_calls ?? []) {
      calls[tc.index] ??= { id: '', name: '', args: '' };
      if (tc.id) calls[tc.index].id = tc.id;
      if (tc.function?.name) calls[tc.index].name += tc.function.name;
      if (tc.function?.arguments) calls[tc.index].args += tc.function.arguments;
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  const call = calls[0];
  check(call?.name === 'get_weather' && same(JSON.parse(call.args || 'null'), { city: 'Paris' }) && finish === 'tool_calls' && content === '',
    'openai: streamed tool call assembled from deltas', { calls, finish, content });
  check(usage && usage.prompt_tokens > 0 && usage.completion_tokens > 0 && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens,
    'openai: stream usage adds up', usage);
  const r2 = await oa.chat.completions.create({ model: SERVED, tools, messages: [...messages,
    { role: 'assistant', content: null, tool_calls: [{ id: call.id, type: 'function', function: { name: call.name, arguments: call.args } }] },
    { role: 'tool', tool_call_id: call.id, content: 'OA_RESULT_21C' }] });
  check(r2.choices[0].message.content === 'It is 21 C in Paris.' && r2.choices[0].finish_reason === 'stop', 'openai: the turn after the tool result', r2.choices[0]);

  const parsed = await oa.chat.completions.parse({ model: SERVED, messages: [{ role: 'user', content: 'OA_PARSE' }], response_format: zodResponseFormat(Weather, 'weather') });
  check(same(parsed.choices[0].message.parsed, PARIS), 'openai: chat.completions.parse() with a zod schema', parsed.choices[0].message);

  const rtools = [{ type: 'function', name: 'get_weather', parameters: tools[0].function.parameters, strict: false }];
  const rs = await oa.responses.create({ model: SERVED, input: 'OA_RESP_ASK', tools: rtools, stream: true });
  let done = null; const types = new Set();
  for await (const ev of rs) { types.add(ev.type); if (ev.type === 'response.completed') done = ev.response; }
  const fc = done?.output?.find((o) => o.type === 'function_call');
  check(fc?.name === 'get_weather' && same(JSON.parse(fc.arguments), { city: 'Paris' }) && types.has('response.function_call_arguments.done'),
    'openai: responses stream with a function call', { types: [...types], output: done?.output });
  const u = done?.usage;
  check(u && u.input_tokens > 0 && u.total_tokens === u.input_tokens + u.output_tokens, 'openai: responses usage adds up', u);
  const rr = await oa.responses.create({ model: SERVED, tools: rtools, input: [{ role: 'user', content: 'OA_RESP_ASK' }, fc,
    { type: 'function_call_output', call_id: fc.call_id, output: 'OA_RESP_RESULT' }] });
  check(rr.output_text === 'Responses: 21 C.', 'openai: responses turn after function_call_output', rr.output);
  const rp = await oa.responses.parse({ model: SERVED, input: 'OA_RESP_PARSE', text: { format: zodTextFormat(Weather, 'weather') } });
  check(same(rp.output_parsed, PARIS), 'openai: responses.parse() with a zod text format', rp.output);
}

async function anthropicSdk(url) {
  const an = new Anthropic({ baseURL: url, apiKey: 'none', maxRetries: 0, timeout: 120000 });
  const tools = [{ name: 'get_weather', description: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
  const messages = [{ role: 'user', content: 'AN_WEATHER_ASK: weather in Paris?' }];
  const s = an.messages.stream({ model: SERVED, max_tokens: 200, tools, messages });
  let deltas = 0;
  s.on('inputJson', () => { deltas++; });
  const m = await s.finalMessage();
  const tu = m.content.find((b) => b.type === 'tool_use');
  check(m.stop_reason === 'tool_use' && tu?.name === 'get_weather' && same(tu.input, { city: 'Paris' }) && deltas > 0,
    'anthropic: streamed tool_use (input_json deltas)', m);
  check(m.content[0]?.type === 'text' && m.content[0].text.trim() === 'Let me check.', 'anthropic: text before the tool call', m.content);
  const m2 = await an.messages.create({ model: SERVED, max_tokens: 200, tools, messages: [...messages, { role: 'assistant', content: m.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: tu.id, content: 'AN_RESULT_21C' }] }] });
  check(m2.content[0]?.text === 'Anthropic: 21 C in Paris.' && m2.stop_reason === 'end_turn', 'anthropic: the turn after the tool_result', m2);

  // usage: input_tokens counts only what was not read from the cache, so the totals match
  const req = { model: SERVED, max_tokens: 20, system: LONG_SYSTEM, messages: [{ role: 'user', content: 'AN_USAGE' }] };
  const a = await an.messages.create(req);
  const b = await an.messages.create(req);
  const total = (x) => x.input_tokens + (x.cache_read_input_tokens ?? 0) + (x.cache_creation_input_tokens ?? 0);
  check(b.usage.cache_read_input_tokens > 0 && total(a.usage) === total(b.usage) && b.usage.input_tokens < a.usage.input_tokens,
    'anthropic: a repeated prompt reads the cache, input_tokens excludes it', { first: a.usage, second: b.usage });
}

async function aiSdk(url) {
  const getWeather = tool({ description: 'weather', inputSchema: z.object({ city: z.string() }), execute: async ({ city }) => `AI_OA_RESULT ${city} 21C` });
  const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey: 'none' });
  const r = await generateText({ model: openai(SERVED), tools: { get_weather: getWeather }, prompt: 'AI_OA_ASK',
    // the tool is required on the first step only: a required choice on every step forbids the answer
    prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? 'required' : 'auto' }), stopWhen: stepCountIs(2), maxRetries: 0 });
  check(r.steps.length === 2 && r.steps[0].toolCalls[0]?.toolName === 'get_weather' && same(r.steps[0].toolCalls[0]?.input, { city: 'Paris' }) &&
    /AI_OA_RESULT Paris/.test(JSON.stringify(r.steps[0].toolResults)) && r.text === 'AI SDK (responses): 21 C.',
    'ai-sdk/openai (Responses): toolChoice required, the tool executed, then the answer', { steps: r.steps.map((s) => ({ calls: s.toolCalls, text: s.text })) });
  check(r.totalUsage?.inputTokens > 0 && r.totalUsage?.outputTokens > 0, 'ai-sdk/openai: usage', r.totalUsage);

  const compat = createOpenAICompatible({ name: 'cairn', baseURL: `${url}/v1`, apiKey: 'none', supportsStructuredOutputs: true });
  const o = await generateObject({ model: compat(SERVED), schema: Weather, prompt: 'AI_OBJECT', maxRetries: 0 });
  check(same(o.object, PARIS), 'ai-sdk/openai-compatible: generateObject', o.object);
  const go = await generateText({ model: compat(SERVED), output: Output.object({ schema: Weather }), prompt: 'AI_OUTPUT_OBJECT', maxRetries: 0 });
  check(same(go.output, PARIS), 'ai-sdk/openai-compatible: generateText with Output.object', go.text);
  const st = streamText({ model: compat(SERVED), prompt: 'AI_STREAM', maxRetries: 0 });
  let streamed = '', parts = 0;
  for await (const t of st.textStream) { streamed += t; parts++; }
  // parts: the server merges tokens that are ready together into one delta, so a loaded machine may
  // deliver the three tokens as one part; the text through the stream parser is what must hold
  check(streamed === 'streamed from cairn' && parts >= 1, 'ai-sdk/openai-compatible: streamText', { streamed, parts });

  const anthropic = createAnthropic({ baseURL: `${url}/v1`, apiKey: 'none' });
  const anWeather = tool({ description: 'weather', inputSchema: z.object({ city: z.string() }), execute: async ({ city }) => `AI_AN_RESULT ${city}` });
  const ra = await generateText({ model: anthropic(SERVED), tools: { get_weather: anWeather }, prompt: 'AI_AN_ASK', stopWhen: stepCountIs(3), maxRetries: 0 });
  check(ra.steps[0]?.toolCalls[0]?.toolName === 'get_weather' && ra.text === 'AI SDK (anthropic): 21 C.', 'ai-sdk/anthropic: tool call executed, then the answer',
    ra.steps.map((s) => ({ calls: s.toolCalls, text: s.text, finish: s.finishReason })));
}

async function langchain(url) {
  const chat = new ChatOpenAI({ model: SERVED, apiKey: 'none', configuration: { baseURL: `${url}/v1` }, maxRetries: 0 });
  for (const [method, marker] of [['functionCalling', 'LC_FUNCTION_CALLING'], ['jsonMode', 'LC_JSON_MODE'], ['jsonSchema', 'LC_JSON_SCHEMA']]) {
    try {
      const out = await chat.withStructuredOutput(Weather, { name: 'weather', method }).invoke(`${marker}: weather in Paris as json`);
      check(same(out, PARIS), `langchain ChatOpenAI withStructuredOutput(${method})`, out);
    } catch (e) { check(false, `langchain ChatOpenAI withStructuredOutput(${method})`, String(e?.message ?? e)); }
  }
  const an = new ChatAnthropic({ model: SERVED, apiKey: 'none', anthropicApiUrl: url, maxRetries: 0 });
  const out = await an.withStructuredOutput(Weather, { name: 'weather' }).invoke('LC_ANTHROPIC: weather in Paris');
  check(same(out, PARIS), 'langchain ChatAnthropic withStructuredOutput', out);
}

async function agents(url) {
  setDefaultOpenAIClient(new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120000 }));
  setTracingDisabled(true);
  let ran = 0;
  const getWeather = agentTool({ name: 'get_weather', description: 'weather', parameters: z.object({ city: z.string() }),
    execute: async ({ city }) => { ran++; return `AG_RESULT_21 for ${city}`; } });
  const agent = new Agent({ name: 'weather', instructions: 'Answer with the weather.', model: SERVED, tools: [getWeather], outputType: Weather });
  const r = await run(agent, 'AG_ASK: weather in Paris?', { maxTurns: 4 });
  check(ran === 1 && same(r.finalOutput, PARIS), 'agents: tool executed, then outputType parsed (Responses API)', { ran, finalOutput: r.finalOutput });
}

async function main() {
  watchdog('clients/sdks', 240000);
  const srv = await serveScripted('sdks', SCRIPT);
  const sections = { openai: openaiSdk, anthropic: anthropicSdk, 'ai-sdk': aiSdk, langchain, agents };
  await Promise.all(Object.entries(sections).map(async ([name, f]) => {
    try { await f(srv.url); } catch (e) { check(false, `${name}: threw`, String(e?.stack ?? e).slice(0, 1500)); }
  }));
  await finish(srv, 'clients/sdks');
}

main().catch((e) => { console.error(e); process.exit(1); });
