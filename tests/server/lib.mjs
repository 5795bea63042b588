// Shared helpers of the black-box server tests: start `cairn serve` on a free port, raw HTTP,
// SSE parsing, assertions with a readable failure list.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const BIN = process.env.CAIRN_BIN || `${process.env.BUILD || 'build'}/cairn`;

let failures = 0, checks = 0;
export function check(cond, what, extra) {
  checks++;
  if (!cond) {
    failures++;
    console.error(`FAIL ${what}` + (extra !== undefined ? `: ${typeof extra === 'string' ? extra : JSON.stringify(extra)}` : ''));
  }
  return cond;
}
export function summary(name) {
  console.error(`${name}: ${checks} checks, ${failures} failures`);
  return failures ? 1 : 0;
}

// Writes the scripted outputs of `--test-script` to a file in a fresh temporary folder (removed when
// the process exits); returns the file's path.
export function writeScript(name, script) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cairn-${name}-`));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'script.json');
  fs.writeFileSync(file, JSON.stringify(script));
  return file;
}

// Every item of an async iterable (a client library's stream), in order.
export async function collect(it) {
  const items = [];
  for await (const x of it) items.push(x);
  return items;
}

// A test that dies on an uncaught error must not leave its servers running (they would take the
// CPU from every later test): node still runs 'exit' handlers then.
const liveServers = new Set();
process.on('exit', () => { for (const p of liveServers) p.kill('SIGKILL'); });

// Starts the server; resolves {port, proc, stderr(), stop()} once it is listening and serving.
export async function startServer(args = [], env = {}, { waitServing = true } = {}) {
  // (info: the wait below reads the server's 'listening' and 'serving model' lines, which a
  // CAIRN_LOG=warn in the caller's environment would hide; a test's own env still wins)
  const proc = spawn(BIN, ['serve', '--port', '0', ...args], { env: { ...process.env, CAIRN_LOG: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  liveServers.add(proc);
  proc.on('exit', () => liveServers.delete(proc));
  let err = '';
  proc.stderr.on('data', (d) => { err += d.toString(); if (process.env.VERBOSE) process.stderr.write(d); });
  proc.stdout.on('data', () => {});
  const port = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not start: ' + err)), 60000);
    const poll = setInterval(() => {
      const m = err.match(/listening on http:\/\/[\d.]+:(\d+)/);
      if (m && (!waitServing || /serving model/.test(err))) { clearInterval(poll); clearTimeout(t); resolve(Number(m[1])); }
    }, 20);
    proc.on('exit', (code) => { clearInterval(poll); clearTimeout(t); reject(new Error(`server exited ${code}: ${err}`)); });
  });
  let stopping = false;
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => {
    if (!stopping) console.error(`FAIL server exited unexpectedly (code ${code}, signal ${sig}); its last log lines:\n${err.split('\n').slice(-8).join('\n')}`);
    resolve({ code, sig });
  }));
  return {
    port, proc, url: `http://127.0.0.1:${port}`,
    stderr: () => err,
    async stop(sig = 'SIGTERM') { stopping = true; proc.kill(sig); return exited; },
    exited,
  };
}

// Raw HTTP request; resolves {status, headers, body, json}.
export function request(port, method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : (typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: {
      ...(data !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}), ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json; try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

// Raw socket: sends bytes (array of [delayMs, Buffer|string]) and collects the reply until close
// or timeout. Resolves {status, text, closed}.
export function rawSocket(port, parts, { timeoutMs = 5000, halfClose = false } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let text = '', done = false;
    const finish = (closed) => {
      if (done) return; done = true;
      s.destroy();
      const m = text.match(/^HTTP\/1\.[01] (\d{3})/);
      resolve({ status: m ? Number(m[1]) : 0, text, closed });
    };
    s.on('data', (d) => { text += d.toString(); });
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    setTimeout(() => finish(false), timeoutMs);
    (async () => {
      for (const [delay, bytes] of parts) {
        if (delay) await new Promise((r) => setTimeout(r, delay));
        if (done) return;
        s.write(bytes);
      }
      if (halfClose) s.end();
    })();
  });
}

// SSE over raw HTTP: resolves {status, events:[{event, data}], comments, raw}.
export function sse(port, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, headers: { 'content-type': 'application/json',
      'content-length': Buffer.byteLength(data), ...headers } }, (res) => {
      let raw = '';
      res.on('data', (c) => { raw += c.toString(); });
      res.on('end', () => {
        const events = []; let comments = 0;
        for (const block of raw.split('\n\n')) {
          if (!block.trim()) continue;
          let ev = null, d = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments++;
            else if (line.startsWith('event: ')) ev = line.slice(7);
            else if (line.startsWith('data: ')) d.push(line.slice(6));
          }
          if (d.length) events.push({ event: ev, data: d.join('\n') });
        }
        resolve({ status: res.statusCode, headers: res.headers, events, comments, raw });
      });
    });
    req.on('error', reject);
    req.write(data);
    req.end();
  });
}

export async function metrics(port) {
  const r = await request(port, 'GET', '/metrics');
  const m = {};
  for (const line of r.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Metrics once no request runs (a cancelled stream is freed at the engine's next step), at most 5 s.
export async function metricsWhenIdle(port) {
  let m;
  for (let i = 0; i < 50; i++) { await sleep(100); m = await metrics(port); if (m['cairn_running'] === 0) break; }
  return m;
}

// The server's stderr holds no sanitizer report and no failed CHECK (an ASan build,
// BUILD=build-asan, reports leaks at exit: call after stop()).
export function checkCleanStderr(srv) {
  const err = srv.stderr();
  check(!/AddressSanitizer|LeakSanitizer|runtime error:|CHECK failed/.test(err), 'no sanitizer report / CHECK in server stderr',
    (err.match(/.*(AddressSanitizer|LeakSanitizer|runtime error:|CHECK failed).*/) || [''])[0]);
}
