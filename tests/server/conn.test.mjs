// Connection-layer suite (issue 20): thousands of idle sockets and slowloris clients never lock
// out /health or /metrics; slow headers and trickled bodies are cut; one address cannot take all
// connections; HTTP framing that a proxy could read differently (smuggling shapes), control bytes
// in paths and auth headers, NUL bytes anywhere in the head (before a bare LF too), folded or
// mixed line ends, HTTP/1.1 without Host and unknown transfer codings are refused and the
// connection closed; HEAD works where GET does; aborts are 499 in metrics and logs.
// Loopback only, bounded in sockets and time.
import net from 'node:net';
import { check, summary, startServer, request, rawSocket, sleep, metrics } from './lib.mjs';

const N_IDLE = 2000, N_LORIS = 50, PER_IP = 100;

function open(port, localAddress) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.on('error', () => {});
    s.on('connect', () => resolve(s));
    setTimeout(() => resolve(s), 15000);   // a loaded 2-core machine accepts 2,000 connections slowly
  });
}

async function timed(port, path) {
  const t0 = performance.now();
  const r = await request(port, 'GET', path);
  return { status: r.status, ms: performance.now() - t0 };
}

async function main() {
  const srv = await startServer(['--fake', '--api-key', 'k3y', '--header-timeout', '2', '--body-min-rate', '1000',
                                 '--per-ip-connections', String(PER_IP), '--http-timeout', '30']);
  const P = srv.port;
  const auth = { authorization: 'Bearer k3y' };

  // ---- idle sockets from 20 loopback addresses (the per-IP limit is per address)
  const idle = [];
  for (let i = 0; i < N_IDLE; i++) idle.push(open(P, `127.0.1.${1 + Math.floor(i / PER_IP)}`));
  const socks = await Promise.all(idle);
  // ---- slowloris: a header byte every 300 ms, never finished
  const loris = [];
  const lorisT0 = performance.now();
  let lorisClosed = [];
  for (let i = 0; i < N_LORIS; i++) {
    const s = await open(P, `127.0.2.${1 + (i % 10)}`);
    const line = 'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(1000);
    let k = 0;
    const t = setInterval(() => { if (k < line.length) s.write(line[k++]); }, 300);
    s.on('close', () => { clearInterval(t); lorisClosed.push(performance.now() - lorisT0); });
    loris.push(s);
  }
  await sleep(300);
  const worst = { health: 0, metrics: 0 };
  let allOk = true;
  for (let i = 0; i < 10; i++) {
    const h = await timed(P, '/health'), m = await timed(P, '/metrics');
    allOk &&= h.status === 200 && m.status === 200;
    worst.health = Math.max(worst.health, h.ms);
    worst.metrics = Math.max(worst.metrics, m.ms);
    await sleep(50);
  }
  const alive = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
  check(alive >= N_IDLE * 0.99, `${N_IDLE} idle sockets held`, alive);
  check(allOk, '/health and /metrics 200 with idle and slowloris sockets attached');
  check(worst.health < 100 && worst.metrics < 100, '/health and /metrics within 100 ms', worst);
  console.error(`conn: ${alive} idle sockets held + ${N_LORIS} slowloris; worst /health ${worst.health.toFixed(1)} ms, /metrics ${worst.metrics.toFixed(1)} ms`);
  // a chat request still runs
  const c = await request(P, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }, auth);
  check(c.status === 200, 'chat with sockets attached', c.status);

  // ---- slowloris cut by the header timeout (2 s)
  await sleep(3000);
  check(lorisClosed.length === N_LORIS, 'slowloris clients cut', lorisClosed.length);
  if (lorisClosed.length) console.error(`conn: slowloris dropped after ${(Math.max(...lorisClosed) / 1000).toFixed(2)} s (header timeout 2 s)`);
  // idle sockets (no byte sent) are not slowloris: held past the header timeout (until --http-timeout)
  const still = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
  check(still >= N_IDLE * 0.99, 'idle sockets held past the header timeout', still);
  for (const s of socks) s.destroy();

  // ---- per-IP limit: the connection over the limit is closed at once, others still served
  const mine = await Promise.all(Array.from({ length: PER_IP }, () => open(P, '127.0.3.1')));
  const extra = await rawSocket(P, [[0, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n']], { timeoutMs: 2000 });
  check(extra.status === 200, 'other address served while one is at its limit', extra.status);
  const over = await new Promise((resolve) => {
    const s = net.connect({ port: P, host: '127.0.0.1', localAddress: '127.0.3.1' });
    let got = '';
    s.on('data', (d) => { got += d; });
    s.on('connect', () => s.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
    setTimeout(() => { s.destroy(); resolve('timeout'); }, 2000);
  });
  check(!/200 OK/.test(over) && over !== 'timeout', 'connection over the per-IP limit refused', over.slice(0, 40));
  for (const s of mine) s.destroy();

  // ---- a trickled body is cut (1000 B/s minimum after 5 s)
  const t0 = performance.now();
  const trickle = await new Promise((resolve) => {
    const s = net.connect(P, '127.0.0.1');
    s.on('error', () => {});
    s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{');
    const t = setInterval(() => s.write(' '), 500);
    s.on('close', () => { clearInterval(t); resolve(performance.now() - t0); });
    setTimeout(() => { clearInterval(t); s.destroy(); resolve(-1); }, 12000);
  });
  check(trickle > 0 && trickle < 8000, 'trickled body cut', trickle);

  // ---- HTTP framing and header bytes
  const H = 'Host: x\r\n', A = 'Authorization: Bearer k3y\r\n';
  const body = '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}';
  const cases = [
    ['duplicate Content-Length', `POST /v1/chat/completions HTTP/1.1\r\n${H}${A}Content-Length: ${body.length}\r\nContent-Length: 5\r\n\r\n${body}`, 400, true],
    ['Content-Length + chunked', `POST /v1/chat/completions HTTP/1.1\r\n${H}${A}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\n${H}\r\n`, 400, true],
    ['Transfer-Encoding gzip', `POST /v1/chat/completions HTTP/1.1\r\n${H}${A}Transfer-Encoding: gzip\r\n\r\nxxxx`, 501, true],
    ['%00 in path', `GET /metrics%00x HTTP/1.1\r\n${H}\r\n`, 400, true],
    ['%0a in path', `GET /health%0a HTTP/1.1\r\n${H}\r\n`, 400, true],
    ['HTTP/1.1 without Host', 'GET /health HTTP/1.1\r\n\r\n', 400, true],
    ['HTTP/1.0 without Host', 'GET /health HTTP/1.0\r\n\r\n', 200, false],
    ['control byte in API key', `POST /v1/chat/completions HTTP/1.1\r\n${H}Authorization: Bearer k3y\u0001zz\r\nContent-Length: ${body.length}\r\n\r\n${body}GET /health HTTP/1.1\r\n${H}\r\n`, 400, true],
    ['NUL in API key', `POST /v1/chat/completions HTTP/1.1\r\n${H}Authorization: Bearer k3y\u0000zz\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 400, true],
    ['NUL in x-api-key', `POST /v1/chat/completions HTTP/1.1\r\n${H}x-api-key: k3y\u0000\r\nContent-Length: ${body.length}\r\n\r\n${body}GET /health HTTP/1.1\r\n${H}\r\n`, 400, true],
    // libmicrohttpd turns line ends into NULs in place: a NUL sent before a line end or inside any
    // header value, a raw NUL in the path, a folded line and mixed line ends are all 400 + close
    ['NUL before a bare LF (x-api-key)', `POST /v1/chat/completions HTTP/1.1\nHost: x\nx-api-key: k3y\u0000\nContent-Length: ${body.length}\n\n${body}GET /health HTTP/1.1\n${H}\r\n`, 400, true],
    ['NUL before a bare LF (Authorization, last line)', `POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: ${body.length}\nAuthorization: Bearer k3y\u0000\n\n${body}`, 400, true],
    ['NUL before a bare LF (Host)', 'GET /health HTTP/1.1\nHost: x\u0000\n\n', 400, true],
    ['NUL before a CRLF (Host)', `GET /health HTTP/1.1\r\nHost: x\u0000\r\n\r\nGET /health HTTP/1.1\r\n${H}\r\n`, 400, true],
    ['NUL inside a header value', `GET /health HTTP/1.1\r\n${H}X-Trace: a\u0000b\r\n\r\n`, 400, true],
    ['raw NUL in path', `GET /metrics\u0000x HTTP/1.1\r\n${H}\r\n`, 400, true],
    ['raw NUL in path, bare LF', 'GET /health\u0000x HTTP/1.1\nHost: x\n\n', 400, true],
    ['folded header line (obs-fold)', `GET /health HTTP/1.1\r\n${H}X-Trace: a\r\n b\r\n\r\n`, 400, true],
    ['mixed line ends', `GET /health HTTP/1.1\r\nHost: x\n\r\nGET /health HTTP/1.1\r\n${H}\r\n`, 400, true],
    ['bare LF line ends only', `POST /v1/chat/completions HTTP/1.1\nHost: x\nx-api-key: k3y\nContent-Length: ${body.length}\n\n${body}`, 200, false],
    ['key prefix only', `POST /v1/chat/completions HTTP/1.1\r\n${H}Authorization: Bearer k3\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 401, false],
    ['HEAD /health', `HEAD /health HTTP/1.1\r\n${H}\r\n`, 200, false],
    ['HEAD /metrics', `HEAD /metrics HTTP/1.1\r\n${H}\r\n`, 200, false],
  ];
  for (const [name, raw, want, mustClose] of cases) {
    const r = await rawSocket(P, [[0, raw]], { timeoutMs: 3000 });
    check(r.status === want, `${name}: ${want}`, r.text.split('\r\n')[0] || '(no answer)');
    const n200 = (r.text.match(/HTTP\/1\.1 200/g) || []).length;
    if (mustClose) check(n200 === 0 && !/HTTP\/1\.1 \d+[\s\S]*HTTP\/1\.1 \d+/.test(r.text), `${name}: no second request runs`, r.text.slice(0, 200));
  }
  const h = await rawSocket(P, [[0, `HEAD /health HTTP/1.1\r\n${H}Connection: close\r\n\r\n`]], { timeoutMs: 3000 });
  check(!/\{"status"/.test(h.text), 'HEAD has no body', h.text);

  // ---- an aborted request counts as 499, not 500
  const before = await metrics(P);
  await new Promise((resolve) => {
    const s = net.connect(P, '127.0.0.1');
    const b = '{"messages":[{"role":"user","content":"long"}],"max_tokens":2000,"stream":true}';
    s.write(`POST /v1/chat/completions HTTP/1.1\r\n${H}${A}Content-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n${b}`);
    s.once('data', () => { s.destroy(); resolve(); });
    s.on('error', resolve);
  });
  const b2 = '{"messages":[{"role":"user","content":"long"}],"max_tokens":2000}';
  await new Promise((resolve) => {
    const s = net.connect(P, '127.0.0.1');
    s.write(`POST /v1/chat/completions HTTP/1.1\r\n${H}${A}Content-Type: application/json\r\nContent-Length: ${b2.length}\r\n\r\n${b2}`);
    setTimeout(() => { s.destroy(); resolve(); }, 200);
    s.on('error', resolve);
  });
  await sleep(1500);
  const after = await metrics(P);
  const sum = (m, code) => Object.entries(m).filter(([k]) => k.startsWith('cairn_requests_total') && k.includes(`"${code}"`)).reduce((a, [, v]) => a + v, 0);
  check(sum(after, 499) - sum(before, 499) === 2, 'two aborts counted as 499', sum(after, 499) - sum(before, 499));
  check(sum(after, 500) - sum(before, 500) === 0, 'no abort counted as 500');
  const logged = srv.stderr().split('\n').filter((l) => / POST \/v1\/chat\/completions 499 \(client gone\)/.test(l)).length;
  check(logged >= 2 && !/ POST \/v1\/chat\/completions 500 /.test(srv.stderr()), 'the aborts logged as 499 (client gone), none as 500', logged);

  // ---- SIGHUP is ignored; served afterwards
  srv.proc.kill('SIGHUP');
  await sleep(200);
  check((await request(P, 'GET', '/health')).status === 200, 'SIGHUP ignored');
  const st = await srv.stop();
  check(st.code === 0, 'clean exit', st);
  check(!/AddressSanitizer|LeakSanitizer|runtime error:|CHECK failed/.test(srv.stderr()), 'no sanitizer report / CHECK in server stderr');

  // ---- during a (simulated 20 s) model load: /health 503 with Retry-After; SIGTERM exits at once
  const ld = await startServer(['--fake'], { CAIRN_FAKE_LOAD_MS: '20000' }, { waitServing: false });
  const hl = await request(ld.port, 'GET', '/health');
  check(hl.status === 503 && Number(hl.headers['retry-after']) > 0, 'health during load: 503 with Retry-After', hl.headers);
  const tl = performance.now();
  const ex = await ld.stop();
  check(ex.code === 0 && performance.now() - tl < 2000, 'SIGTERM during load exits promptly', { ex, ms: performance.now() - tl });
  return summary('conn');
}

main().then((rc) => process.exit(rc), (e) => { console.error(e); process.exit(1); });
