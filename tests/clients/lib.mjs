// Shared helpers of the client conformance suite (tests/clients): the server on the tiny Qwen3 with
// a test script, and real client programs run with a hard time limit, their own HOME and no way
// to phone home (the suite itself runs in a loopback-only network namespace where it can).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { check, startServer, summary } from '../server/lib.mjs';

export { check, summary } from '../server/lib.mjs';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const BIN_DIR = path.join(ROOT, 'tests/clients/node_modules/.bin');
export const MODEL = process.env.CAIRN_CLIENTS_MODEL;
export const SERVED = 'cairn-test';

export function tmpDir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `cairn-${name}-`));
}

// Starts cairn serve on the suite's model with SCRIPT as its test script; any model id is answered
// ('*': agents' side requests use their own ids). Resolves the server of tests/server/lib.mjs.
export async function serveScripted(name, script, extra = []) {
  if (!MODEL) throw new Error('CAIRN_CLIENTS_MODEL is not set (run through tests/clients/client.sh)');
  const dir = tmpDir(name);
  const file = path.join(dir, 'script.json');
  fs.writeFileSync(file, JSON.stringify(script));
  const srv = await startServer([MODEL, '--backend', 'cpu', '--threads', '2', '--max-model-len', '40960', '--test-script', file,
    '--served-model-name', `${SERVED},*`, ...extra]);
  process.on('exit', () => { if (srv.proc.exitCode === null) srv.proc.kill('SIGKILL'); });   // never left behind
  return srv;
}

// Ends the test (FAIL) if it has not finished in ms: a hung client or server never stalls CI.
export function watchdog(name, ms) {
  setTimeout(() => { console.error(`FAIL ${name}: not finished after ${ms / 1000} s`); process.exit(1); }, ms).unref();
}

// Runs a client program; resolves {code, signal, stdout, stderr, timedOut, ms}. The process group is
// killed at timeoutMs, so a client that hangs (retries, a prompt it waits for) fails the test in
// bounded time instead of stalling CI.
const running = new Set();   // process groups of clients still running, killed if the test exits
process.on('exit', () => { for (const pid of running) try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } });

export function runClient(cmd, args, { env = {}, cwd, timeoutMs = 120000, input } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(cmd, args, { cwd, env: { PATH: process.env.PATH, LANG: 'C.UTF-8', TERM: 'dumb', NO_COLOR: '1', CI: '1', ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '', stderr = '', timedOut = false;
    if (p.pid) running.add(p.pid);
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; if (process.env.VERBOSE) process.stderr.write(d); });
    if (input !== undefined) p.stdin.end(input);
    const kill = setTimeout(() => { timedOut = true; try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }, timeoutMs);
    p.on('error', (e) => { clearTimeout(kill); resolve({ code: -1, signal: null, stdout, stderr: stderr + String(e), timedOut, ms: Date.now() - t0 }); });
    p.on('close', (code, signal) => { clearTimeout(kill); running.delete(p.pid); resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - t0 }); });
  });
}

// The tail of a client's output for a failure message.
export function tail(r, n = 1500) {
  return `exit ${r.code}${r.timedOut ? ' (killed at the time limit)' : ''}; stdout: ${r.stdout.slice(-n)}; stderr: ${r.stderr.slice(-n)}`;
}

// Exits 77 (SKIP, with the reason) when the client binary cannot run on this machine, e.g. no
// prebuilt binary for this CPU or libc: never a silent pass.
export async function requireRunnable(name, cmd, args = ['--version']) {
  const r = await runClient(cmd, args, { timeoutMs: 30000, env: { HOME: tmpDir('ver') } });
  if (r.code !== 0) {
    console.log(`SKIP: ${name} cannot run on this machine (${cmd} ${args.join(' ')}: ${tail(r, 300).replace(/\s+/g, ' ')})`);
    process.exit(77);
  }
  return r.stdout.trim();
}

// A Hermes tool call as Qwen3 emits it (the tiny model's template and parser).
export const hermesCall = (name, args) => `<tool_call>\n${JSON.stringify({ name, arguments: args })}\n</tool_call>`;

// The server's request lines (status, prompt/cached/generated tokens, time) into the test's log,
// so a failure or a slow run can be read from CI output; and the ones refused (4xx/5xx).
export function requestLines(srv) {
  return srv.stderr().split('\n').filter((l) => / req-\d+ [A-Z]+ \//.test(l)).map((l) => l.replace(/^.*?(req-\d+)/, '$1'));
}
/* The request lines once the server has logged every request a client that just exited made: the
 * server writes a request's line after its response ends, which the client may have read (and
 * exited on) first, so the lines are read again until they stop changing for 300 ms (5 s at most). */
export async function settledRequestLines(srv) {
  let lines = requestLines(srv);
  for (let i = 0; i < 16; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = requestLines(srv);
    if (now.length === lines.length) return now;
    lines = now;
  }
  return lines;
}
export function refusedLines(srv) {
  return requestLines(srv).filter((l) => /^req-\d+ [A-Z]+ \S+ [45]\d\d /.test(l));
}

// Every test ends alike: no request refused, the request lines into the log, the server stopped,
// the exit status from the checks.
export async function finish(srv, name) {
  const refused = refusedLines(srv);
  check(refused.length === 0, 'no request was refused', refused.join('\n'));
  console.error(requestLines(srv).join('\n'));
  await srv.stop();
  process.exit(summary(name));
}
