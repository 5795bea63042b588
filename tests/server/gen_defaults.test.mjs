// The model's generation_config.json sampling fields are the defaults of what a request leaves
// out: a copy of CAIRN_TEST_MODEL whose file says top_k 1 makes every sampled request that sends
// no top_k pick the argmax (its output equals a temperature-0 request's), on the OpenAI, Anthropic
// and Ollama APIs; a request's own top_k wins; --no-generation-defaults restores the API's
// defaults (temperature 1, no top-k), whose seeded samples differ from the greedy output.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { check, summary, startServer, request } from './lib.mjs';

const model = process.env.CAIRN_TEST_MODEL;
if (!model) { console.log('skip: gen_defaults needs CAIRN_TEST_MODEL (a real checkpoint)'); process.exit(77); }
const args = (process.env.LOAD_ARGS || '').split(' ').filter(Boolean);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-gendef-'));
for (const f of fs.readdirSync(model)) if (f !== 'generation_config.json') fs.symlinkSync(path.resolve(model, f), path.join(dir, f));
fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ do_sample: true, temperature: 1.0, top_k: 1 }));

const messages = [{ role: 'user', content: 'Name three rivers.' }];
const kw = { chat_template_kwargs: { enable_thinking: false } };
const MAX = 12;

async function chat(port, extra) {
  const r = await request(port, 'POST', '/v1/chat/completions', { messages, max_tokens: MAX, ...kw, ...extra });
  check(r.status === 200, `chat ${JSON.stringify(extra)} answers 200`, r.body);
  return r.json?.choices?.[0]?.message?.content;
}

try {
  let srv = await startServer([dir, '--served-model-name', 'gd', ...args]);
  check(/sampling defaults from generation_config\.json: temperature 1 top_k 1/.test(srv.stderr()),
    'the server logs the defaults it took from generation_config.json');
  const greedy = await chat(srv.port, { temperature: 0 });
  check(typeof greedy === 'string' && greedy.length > 0, 'the greedy reference has text');
  check(await chat(srv.port, { seed: 1 }) === greedy, 'no sampling fields: top_k 1 from the file, the greedy output');
  check(await chat(srv.port, { seed: 2, temperature: 1.5 }) === greedy, 'a request temperature keeps the file top_k 1');
  const own = await chat(srv.port, { seed: 1, temperature: 1.5, top_k: 0 });
  check(own !== greedy, "a request's own top_k (0: off) wins over the file's", own);

  const m = await request(srv.port, 'POST', '/v1/messages', { model: 'gd', max_tokens: MAX, messages, ...kw });
  check(m.status === 200 && m.json?.content?.[0]?.text === greedy, 'Anthropic messages: the file top_k applies', m.body);
  const o = await request(srv.port, 'POST', '/api/chat', { model: 'gd', messages, stream: false, think: false,
    options: { num_predict: MAX, seed: 3, temperature: 1.2 } });
  check(o.status === 200 && o.json?.message?.content === greedy, 'Ollama chat: the file top_k applies', o.body);
  await srv.stop();

  srv = await startServer([dir, '--no-generation-defaults', ...args]);
  check(!/sampling defaults from generation_config/.test(srv.stderr()), '--no-generation-defaults logs no defaults');
  const api = await chat(srv.port, { seed: 1 });
  check(api !== greedy, "--no-generation-defaults: the API's temperature 1 without top-k samples", api);
  await srv.stop();
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
summary('gen_defaults');
