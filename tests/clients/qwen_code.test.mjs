// Qwen Code (`qwen -p`, pinned in package.json) against cairn with each of its providers:
// /v1/chat/completions ("openai", its default), /v1/messages ("anthropic") and /v1/responses
// ("openai-responses"). The scripted model thinks, then calls run_shell_command; Qwen Code runs it
// (yolo approval), sends the result back, and prints the scripted final answer. Its requests carry
// max_tokens 32000 against a 40,960-token context, stream_options.include_usage and 14 tools.
import fs from 'node:fs';
import path from 'node:path';
import { check, serveScripted, runClient, requireRunnable, tmpDir, tail, hermesCall, BIN_DIR, SERVED, watchdog, finish } from './lib.mjs';

const QWEN = path.join(BIN_DIR, 'qwen');
// a reasoning model's output: the think block goes back to the server in the next request's history
const THINK = '<think>\nThe user wants the marker printed; I will run the command.\n</think>\n\n';
const SCRIPT = [
  { match: 'QW_SHELL_TASK', last: true, output: THINK + hermesCall('run_shell_command', { command: "printf 'QWOUT_%s' $((6*7)) > qw_out.txt && cat qw_out.txt", description: 'Print a marker' }) },
  { match: 'QWOUT_42', last: true, output: 'The command printed QWOUT_42. QW_DONE' },
];

// update checks, usage statistics and telemetry off; the OpenAI-compatible provider
const SETTINGS = {
  general: { disableAutoUpdate: true, disableUpdateNag: true },
  privacy: { usageStatisticsEnabled: false },
  telemetry: { enabled: false },
  security: { auth: { selectedType: 'openai' } },
  model: { name: SERVED },
};

// Qwen Code's messages, one line each, into the log (what a failure or an extra turn looked like)
function transcript(r) {
  let v;
  try { v = JSON.parse(r.stdout.trim()); } catch { return; }
  if (Array.isArray(v)) for (const m of v) console.error(`qwen ${m.type}: ${JSON.stringify(m.message?.content ?? m.result ?? m.subtype ?? '').slice(0, 300)}`);
}

function result(r) {
  let v;
  try { v = JSON.parse(r.stdout.trim()); } catch { return null; }
  return Array.isArray(v) ? v.filter((m) => m.type === 'result').pop() ?? null : v;
}

async function main() {
  watchdog('clients/qwen_code', 480000);
  const version = await requireRunnable('Qwen Code', QWEN);
  console.error(`qwen ${version}`);
  const srv = await serveScripted('qwen', SCRIPT);
  // its three providers: chat completions (the default "openai"), Anthropic messages, Responses
  const AUTH = {
    openai: (url) => ({ OPENAI_BASE_URL: `${url}/v1`, OPENAI_API_KEY: 'none', OPENAI_MODEL: SERVED }),
    anthropic: (url) => ({ ANTHROPIC_BASE_URL: url, ANTHROPIC_API_KEY: 'none', ANTHROPIC_MODEL: SERVED }),
    'openai-responses': (url) => ({ OPENAI_BASE_URL: `${url}/v1`, OPENAI_API_KEY: 'none', OPENAI_MODEL: SERVED }),
  };
  for (const [auth, env] of Object.entries(AUTH)) {
    const home = tmpDir('qwen-home');
    fs.mkdirSync(path.join(home, '.qwen'));
    fs.writeFileSync(path.join(home, '.qwen', 'settings.json'), JSON.stringify({ ...SETTINGS, security: { auth: { selectedType: auth } } }));
    const work = tmpDir('qwen-work');
    const r = await runClient(QWEN, ['--approval-mode', 'yolo', '--auth-type', auth, '--output-format', 'json', '--max-session-turns', '4',
      'QW_SHELL_TASK: run the command that prints the marker.'],
      { env: { HOME: home, ...env(srv.url), QWEN_CODE_SUPPRESS_YOLO_WARNING: '1' }, cwd: work, timeoutMs: 180000 });
    const res = result(r);
    transcript(r);
    check(r.code === 0 && res, `${auth}: qwen exits 0 with a JSON result`, tail(r));
    check(fs.existsSync(path.join(work, 'qw_out.txt')) && fs.readFileSync(path.join(work, 'qw_out.txt'), 'utf8') === 'QWOUT_42',
      `${auth}: the scripted shell command ran`, tail(r));
    check(/QW_DONE/.test(res?.result ?? res?.response ?? ''), `${auth}: the final answer after the tool result`, res ?? tail(r));
    check(!res?.is_error, `${auth}: the result is not an error`, res);
  }
  await finish(srv, 'clients/qwen_code');
}

main().catch((e) => { console.error(e); process.exit(1); });
