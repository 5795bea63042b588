// Claude Code (`claude -p`, pinned in package.json) against cairn's /v1/messages: the scripted model
// asks for a Bash call and then a Write call; Claude Code must run them (the files appear on disk)
// and answer the follow-up turn with the scripted final text. Claude Code's requests carry what
// issue 18 is about: a mid-conversation system turn, cache_control, thinking/context_management/
// output_config, max_tokens 32000 against a 40,960-token context, server-side tool shapes.
import fs from 'node:fs';
import path from 'node:path';
import { check, serveScripted, runClient, requireRunnable, tmpDir, tail, hermesCall, BIN_DIR, SERVED, settledRequestLines, watchdog, finish } from './lib.mjs';

const CLAUDE = path.join(BIN_DIR, 'claude');
const work = tmpDir('cc-work');
// a reasoning model's output: the think block goes back to the server in the next request's history
const THINK = '<think>\nThe user wants the marker printed; I will run the command.\n</think>\n\n';
const SCRIPT = [
  // turn 1: the user's marker asks for a tool call; turn 2: the tool's output is the newest marker
  { match: 'CC_BASH_TASK', last: true, output: THINK + hermesCall('Bash', { command: "printf 'CCOUT_%s' $((6*7)) > bash_out.txt && cat bash_out.txt", description: 'Print a marker' }) },
  { match: 'CCOUT_42', last: true, output: 'The command printed CCOUT_42. CC_BASH_DONE' },
  { match: 'CC_WRITE_TASK', last: true, output: 'Writing it.\n' + hermesCall('Write', { file_path: path.join(work, 'CCWFILE.txt'), content: 'written through cairn\n' }) },
  { match: 'CCWFILE', last: true, output: 'The file is written. CC_WRITE_DONE' },
  // a Read of a PNG puts an image in the history: a text-only model must see the placeholder, not a 400
  { match: 'CC_IMAGE_TASK', last: true, output: hermesCall('Read', { file_path: path.join(work, 'pixel.png') }) },
  { match: '[image omitted', last: true, output: 'I cannot see images. CC_IMAGE_DONE' },
  // a second prompt in the Bash session (--resume): the whole history is sent again
  { match: 'CC_FOLLOWUP', last: true, output: 'Yes, it printed CCOUT_42. CC_FOLLOWUP_DONE' },
];
// the same allowed tools in every run, so every run's prompt shares Claude Code's prefix (cached once)
const TOOLS = 'Bash,Write,Read';
// a 1x1 PNG
const PIXEL = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');

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

// one HOME for every run, as one user's sessions have (the prompt names its memory folder)
const HOME = tmpDir('cc-home');

async function claude(srv, prompt, tools, { home = HOME, resume } = {}) {
  const e = { ...env(home), ANTHROPIC_BASE_URL: srv.url };
  return runClient(CLAUDE, ['-p', prompt, '--model', SERVED, '--output-format', 'json', '--max-turns', '4', '--allowedTools', tools,
    ...(resume ? ['--resume', resume] : [])], { env: e, cwd: work, timeoutMs: 180000 });
}

function result(r) {
  try { return JSON.parse(r.stdout.trim().split('\n').pop()); } catch { return null; }
}

async function main() {
  watchdog('clients/claude_code', 420000);
  const version = await requireRunnable('Claude Code', CLAUDE);
  console.error(`claude ${version}`);
  const srv = await serveScripted('cc', SCRIPT);
  fs.writeFileSync(path.join(work, 'pixel.png'), PIXEL);
  // the Bash run first: its prefill of Claude Code's ~11k-token prefix is then cached for the others
  const bash = await claude(srv, 'CC_BASH_TASK: run the command that prints the marker.', TOOLS);
  const bashLines = await settledRequestLines(srv);
  const others = Promise.all([
    claude(srv, 'CC_WRITE_TASK: write the file.', TOOLS),
    claude(srv, 'CC_IMAGE_TASK: look at pixel.png.', TOOLS),
  ]);

  const b = result(bash);
  check(bash.code === 0 && b, 'claude -p (Bash) exits 0 with a JSON result', tail(bash));
  check(fs.existsSync(path.join(work, 'bash_out.txt')) && fs.readFileSync(path.join(work, 'bash_out.txt'), 'utf8') === 'CCOUT_42',
    'the Bash tool call ran the scripted command', tail(bash));
  check(b?.is_error === false && /CC_BASH_DONE/.test(b?.result ?? ''), 'the follow-up turn after the Bash result is answered', b ?? tail(bash));
  check(b?.num_turns >= 2, 'two model turns (tool call, then the answer)', b?.num_turns);
  check(b?.usage?.input_tokens > 0 && b?.usage?.output_tokens > 0, 'usage reported', b?.usage);
  // Claude Code sums usage over the run's requests: with Anthropic's semantics (input_tokens
  // uncached only) the sum of the three fields is the sum of the prompts the server saw
  const prompts = bashLines.map((l) => Number(/prompt=(\d+)/.exec(l)?.[1] ?? 0)).reduce((x, y) => x + y, 0);
  const u = b?.usage ?? {};
  check(u.cache_read_input_tokens > 0 && u.input_tokens + u.cache_read_input_tokens + (u.cache_creation_input_tokens ?? 0) === prompts,
    'usage: the second turn read the cache, and the three input fields add up to the prompts served', { usage: u, prompts, bashLines });

  if (b?.session_id) {
    const f = await claude(srv, 'CC_FOLLOWUP: did it print the marker?', TOOLS, { resume: b.session_id });
    const fr = result(f);
    check(f.code === 0 && fr?.is_error === false && /CC_FOLLOWUP_DONE/.test(fr?.result ?? ''), 'a resumed session answers the next prompt', fr ?? tail(f));
  } else check(false, 'the Bash run reports its session_id', b);

  const [write, image] = await others;
  const im = result(image);
  check(image.code === 0 && im?.is_error === false && /CC_IMAGE_DONE/.test(im?.result ?? ''), 'an image in the history (Read of a PNG) degrades to a placeholder',
    im ?? tail(image));
  check(/a 'image' content part was replaced by a placeholder/.test(srv.stderr()), 'the server logged the placeholder');

  const w = result(write);
  const wf = path.join(work, 'CCWFILE.txt');
  check(write.code === 0 && w, 'claude -p (Write) exits 0 with a JSON result', tail(write));
  check(fs.existsSync(wf) && fs.readFileSync(wf, 'utf8') === 'written through cairn\n', 'the Write tool call wrote the file', tail(write));
  check(w?.is_error === false && /CC_WRITE_DONE/.test(w?.result ?? ''), 'the follow-up turn after the Write result is answered', w ?? tail(write));

  // every run shares Claude Code's system prompt and tools, ~80% of its first prompt (its billing
  // line, a hash of the conversation, is dropped; the user's own text comes next): only the
  // first request prefills them
  const lines = await settledRequestLines(srv);
  const misses = lines.slice(1).filter((l) => { const [, p, c] = /prompt=(\d+) cached=(\d+)/.exec(l) ?? []; return !(Number(c) > 0.75 * Number(p)); });
  check(lines.length > 1 && misses.length === 0, 'every request after the first reads the system prompt and tools from the cache', misses.join('\n'));
  await finish(srv, 'clients/claude_code');
}

main().catch((e) => { console.error(e); process.exit(1); });
