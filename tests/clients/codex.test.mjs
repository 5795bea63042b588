// Codex CLI (`codex exec`, pinned in package.json) against cairn's Responses API (wire_api
// "responses", the only one Codex speaks): the scripted model calls Codex's exec_command tool, Codex
// runs the command, sends its output back as a function_call_output, and the scripted final answer
// is what `codex exec` prints. Its requests carry a developer turn, namespace/web_search tools,
// reasoning {summary: auto}, include [reasoning.encrypted_content], store:false, prompt_cache_key.
import fs from 'node:fs';
import path from 'node:path';
import { check, serveScripted, runClient, requireRunnable, tmpDir, tail, hermesCall, BIN_DIR, SERVED, watchdog, finish } from './lib.mjs';

const CODEX = path.join(BIN_DIR, 'codex');
// a reasoning model's output: the think block goes back to the server in the next request's history
const THINK = '<think>\nThe user wants the marker printed; I will run the command.\n</think>\n\n';
const SCRIPT = [
  { match: 'CX_SHELL_TASK', last: true, output: THINK + hermesCall('exec_command', { cmd: "printf 'CXOUT_%s' $((6*7)) > cx_out.txt && cat cx_out.txt" }) },
  { match: 'CXOUT_42', last: true, output: 'The command printed CXOUT_42. CX_DONE' },
  // `codex exec resume`: the next prompt of the session, sent with the whole history again
  { match: 'CX_FOLLOWUP', last: true, output: 'Yes: CXOUT_42. CX_FOLLOWUP_DONE' },
];

function config(url) {
  // update checks, analytics and feedback off; one try per request; no sandbox (bubblewrap may not
  // work in a container, and the command is ours)
  return `model = "${SERVED}"
model_provider = "cairn"
model_context_window = 40960
check_for_update_on_startup = false
approval_policy = "never"
sandbox_mode = "danger-full-access"
[model_providers.cairn]
name = "cairn"
base_url = "${url}/v1"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 120000
[analytics]
enabled = false
[feedback]
enabled = false
[otel]
exporter = "none"
`;
}

function events(r) {
  const out = [];
  for (const line of r.stdout.split('\n')) { try { out.push(JSON.parse(line)); } catch { /* not an event */ } }
  return out;
}

async function main() {
  watchdog('clients/codex', 360000);
  const version = await requireRunnable('Codex CLI', CODEX);
  console.error(version);
  const srv = await serveScripted('codex', SCRIPT);
  const home = tmpDir('codex-home');
  const codexHome = path.join(home, '.codex');
  fs.mkdirSync(codexHome);
  fs.writeFileSync(path.join(codexHome, 'config.toml'), config(srv.url));
  const work = tmpDir('codex-work');
  const r = await runClient(CODEX, ['exec', '--skip-git-repo-check', '--json', 'CX_SHELL_TASK: run the command that prints the marker.'],
    { env: { HOME: home, CODEX_HOME: codexHome }, cwd: work, timeoutMs: 180000 });
  const ev = events(r);
  const items = ev.filter((e) => e.type === 'item.completed').map((e) => e.item);
  const cmd = items.find((i) => i.type === 'command_execution');
  const msg = items.filter((i) => i.type === 'agent_message').pop();
  check(r.code === 0, 'codex exec exits 0', tail(r));
  check(fs.existsSync(path.join(work, 'cx_out.txt')) && fs.readFileSync(path.join(work, 'cx_out.txt'), 'utf8') === 'CXOUT_42',
    'the scripted shell command ran', tail(r));
  check(cmd && /CXOUT_42/.test(cmd.aggregated_output ?? '') && cmd.exit_code === 0, 'codex reports the command and its output', cmd ?? tail(r));
  check(msg && /CX_DONE/.test(msg.text ?? ''), 'the final answer after the tool output', msg ?? tail(r));
  const think = items.find((i) => i.type === 'reasoning');
  check(think && /I will run the command/.test(think.text ?? ''), 'the reasoning is shown as a reasoning item', think ?? items.map((i) => i.type));
  const done = ev.find((e) => e.type === 'turn.completed');
  check(done?.usage?.input_tokens > 0 && done?.usage?.output_tokens > 0, 'turn usage reported', done ?? ev.slice(-3));
  check(!ev.some((e) => e.type === 'error' || e.type === 'turn.failed'), 'no error events', ev.filter((e) => e.type === 'error' || e.type === 'turn.failed'));
  const thread = ev.find((e) => e.type === 'thread.started')?.thread_id;
  check(thread, 'codex reports its thread id', ev.slice(0, 2));
  if (thread) {
    const f = await runClient(CODEX, ['exec', '--skip-git-repo-check', '--json', 'resume', thread, 'CX_FOLLOWUP: did it print the marker?'],
      { env: { HOME: home, CODEX_HOME: codexHome }, cwd: work, timeoutMs: 180000 });
    const fmsg = events(f).filter((e) => e.type === 'item.completed' && e.item.type === 'agent_message').pop();
    check(f.code === 0 && /CX_FOLLOWUP_DONE/.test(fmsg?.item?.text ?? ''), 'codex exec resume: the next prompt of the session answered', fmsg ?? tail(f));
  }
  await finish(srv, 'clients/codex');
}

main().catch((e) => { console.error(e); process.exit(1); });
