// Claude Code (`claude -p`, pinned in package.json) against cairn's /v1/messages: the scripted model
// asks for a Bash call and then a Write call; Claude Code must run them (the files appear on disk)
// and answer the follow-up turn with the scripted final text. Claude Code's requests carry what
// issue 18 is about: a mid-conversation system turn, cache_control, thinking/context_management/
// output_config, max_tokens 32000 against a 40,960-token context, server-side tool shapes.
import fs from 'node:fs';
import path from 'node:path';
import { check, summary, serveScripted, runClient, requireRunnable, tmpDir, tail, hermesCall, BIN_DIR, SERVED } from './lib.mjs';

const CLAUDE = path.join(BIN_DIR, 'claude');
const work = tmpDir('cc-work');
const SCRIPT = [
  // turn 1: the user's marker asks for a tool call; turn 2: the tool's output is the newest marker
  { match: 'CC_BASH_TASK', last: true, output: hermesCall('Bash', { command: "printf 'CCOUT_%s' $((6*7)) > bash_out.txt && cat bash_out.txt", description: 'Print a marker' }) },
  { match: 'CCOUT_42', last: true, output: 'The command printed CCOUT_42. CC_BASH_DONE' },
  { match: 'CC_WRITE_TASK', last: true, output: 'Writing it.\n' + hermesCall('Write', { file_path: path.join(work, 'CCWFILE.txt'), content: 'written through cairn\n' }) },
  { match: 'CCWFILE', last: true, output: 'The file is written. CC_WRITE_DONE' },
];

// Offline: no autoupdater, telemetry, error reports or other non-essential traffic; one try per
// request (a failure shows at once instead of after minutes of backoff); its own HOME.
function env(home) {
  return {
    HOME: home, CLAUDE_CONFIG_DIR: path.join(home, '.claude'),
    ANTHROPIC_BASE_URL: '', ANTHROPIC_API_KEY: 'sk-cairn-test',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_AUTOUPDATER: '1', DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1', DISABLE_BUG_COMMAND: '1', CLAUDE_CODE_MAX_RETRIES: '0', API_TIMEOUT_MS: '120000',
    ANTHROPIC_SMALL_FAST_MODEL: SERVED, ANTHROPIC_DEFAULT_HAIKU_MODEL: SERVED,
  };
}

async function claude(srv, prompt, tools) {
  const home = tmpDir('cc-home');
  const e = { ...env(home), ANTHROPIC_BASE_URL: srv.url };
  return runClient(CLAUDE, ['-p', prompt, '--model', SERVED, '--output-format', 'json', '--max-turns', '4', '--allowedTools', tools],
    { env: e, cwd: work, timeoutMs: 180000 });
}

function result(r) {
  try { return JSON.parse(r.stdout.trim().split('\n').pop()); } catch { return null; }
}

async function main() {
  const version = await requireRunnable('Claude Code', CLAUDE);
  console.error(`claude ${version}`);
  const srv = await serveScripted('cc', SCRIPT);
  const [bash, write] = await Promise.all([
    claude(srv, 'CC_BASH_TASK: run the command that prints the marker.', 'Bash'),
    claude(srv, 'CC_WRITE_TASK: write the file.', 'Write'),
  ]);

  const b = result(bash);
  check(bash.code === 0 && b, 'claude -p (Bash) exits 0 with a JSON result', tail(bash));
  check(fs.existsSync(path.join(work, 'bash_out.txt')) && fs.readFileSync(path.join(work, 'bash_out.txt'), 'utf8') === 'CCOUT_42',
    'the Bash tool call ran the scripted command', tail(bash));
  check(b?.is_error === false && /CC_BASH_DONE/.test(b?.result ?? ''), 'the follow-up turn after the Bash result is answered', b ?? tail(bash));
  check(b?.num_turns >= 2, 'two model turns (tool call, then the answer)', b?.num_turns);
  check(b?.usage?.input_tokens > 0 && b?.usage?.output_tokens > 0, 'usage reported', b?.usage);

  const w = result(write);
  const wf = path.join(work, 'CCWFILE.txt');
  check(write.code === 0 && w, 'claude -p (Write) exits 0 with a JSON result', tail(write));
  check(fs.existsSync(wf) && fs.readFileSync(wf, 'utf8') === 'written through cairn\n', 'the Write tool call wrote the file', tail(write));
  check(w?.is_error === false && /CC_WRITE_DONE/.test(w?.result ?? ''), 'the follow-up turn after the Write result is answered', w ?? tail(write));

  const refused = srv.stderr().split('\n').filter((l) => /POST \/v1\/messages\S* [45]\d\d /.test(l));
  check(refused.length === 0, 'no /v1/messages request was refused', refused.join('\n'));
  await srv.stop();
  process.exit(summary('clients/claude_code'));
}

main().catch((e) => { console.error(e); process.exit(1); });
