// The real player in a real browser: the Amazon IVS Web Player SDK (the viewer page) in Debian's
// headless Chromium, driven by playwright-core, against `serve` and its embedded local IVS.
//
//   node tests/browser/play.mjs BIN      # BIN: the ivs-playback-auth binary
//
// Checks: the demo channel plays (state Playing, video time advancing for 5 s; a screenshot goes to
// target/viewer-playing.png); every kind of bad token fails as it fails against IVS (ErrorAuthorization
// from MasterPlaylist); a rotation while the page reloads every few seconds fails no load.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'viewer', 'package.json'));
const { chromium } = require('playwright-core');

const bin = resolve(process.argv[2] ?? join(root, 'target', 'debug', 'ivs-playback-auth'));
const API_KEY = 'browser-test-backend-key-0123456789';
const ADMIN = 'browser-test-admin-token-0123456789';
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

let failures = 0;
const results = [];
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push(`ok    ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures += 1;
    results.push(`FAIL  ${name}: ${e.stack ?? e}`);
  }
  console.log(results.at(-1));
}
function assert(cond, message) {
  if (!cond) throw new Error(message);
}

// --- the service ---------------------------------------------------------------------------------
const work = mkdtempSync(join(tmpdir(), 'ivs-browser-'));
writeFileSync(join(work, 'config.toml'), `
[server]
listen = "127.0.0.1:0"
viewer_dir = "${join(root, 'viewer', 'dist')}"
[keys]
dir = "${join(work, 'keys')}"
[[api_keys]]
name = "browser-test"
sha256 = "${sha256(API_KEY)}"
channels = ["*"]
max_ttl_seconds = 600
allowed_origins = ["*"]
allow_single_use = true
rate_per_second = 1000
[anonymous]
rate_per_ip_per_second = 1000
[viewer_ids]
secret = "browser-test-viewer-id-secret-0123456789"
[admin]
listen = "127.0.0.1:0"
token_sha256 = "${sha256(ADMIN)}"
`);
const serve = spawn(bin, ['serve', '--config', join(work, 'config.toml')], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
const serveLog = [];
createInterface({ input: serve.stderr }).on('line', (l) => serveLog.push(l));
const banner = {};
await new Promise((ok, fail) => {
  const timer = setTimeout(() => fail(new Error(`serve did not start: ${serveLog.join('\n')}`)), 30_000);
  createInterface({ input: serve.stdout }).on('line', (line) => {
    const m = line.match(/^(token API|admin API|local IVS|signing key|demo channel|watch it in the IVS player):\s*(.*)$/);
    if (m) banner[m[1]] = m[2];
    if (line.startsWith('  http') && banner['watch it in the IVS player'] === '') banner.viewer = line.trim();
    if (banner.viewer) { clearTimeout(timer); ok(); }
  });
  serve.on('exit', (code) => fail(new Error(`serve exited ${code}: ${serveLog.join('\n')}`)));
});
const api = banner['token API'];
const adminUrl = banner['admin API'];
const viewerUrl = banner.viewer;
const demoArn = banner['demo channel'].split(' ')[0];
console.log(`serve: ${api}, viewer ${viewerUrl}`);

async function mint(body, headers = {}) {
  const r = await fetch(`${api}/v1/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, ...headers },
    body: JSON.stringify({ channel: 'demo', ...body }),
  });
  const json = await r.json();
  assert(r.ok, `mint ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}
async function admin(path, body) {
  const r = await fetch(`${adminUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await r.json();
  assert(r.ok, `admin ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

// --- the browser ---------------------------------------------------------------------------------
const executablePath = execFileSync('which', ['chromium']).toString().trim();
const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
// Nothing leaves loopback: the player's telemetry goes to *.live-video.net.
await context.route(/live-video\.net/, (route) => route.abort());

/** Opens the viewer page; resolves with the page. */
async function open(query) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`  page error: ${e.message}`));
  await page.goto(`${viewerUrl}${query}`);
  return page;
}

/** Waits until the player plays and video time advances for `seconds`. */
async function playsFor(page, seconds) {
  await page.waitForFunction(() => window.viewer?.states.includes('Playing') || window.viewer?.errors.length,
    null, { timeout: 30_000 });
  const errors = await page.evaluate(() => window.viewer.errors);
  assert(errors.length === 0, `player errors: ${JSON.stringify(errors)}`);
  const t0 = await page.evaluate(() => document.querySelector('video').currentTime);
  await page.waitForTimeout(seconds * 1000);
  const t1 = await page.evaluate(() => document.querySelector('video').currentTime);
  const state = await page.evaluate(() => window.viewer.player.getState());
  assert(t1 - t0 >= seconds * 0.8, `video time went ${t0} -> ${t1} in ${seconds} s (state ${state})`);
  assert(state === 'Playing', `state ${state}`);
  return t1 - t0;
}

/** Waits for the player's error and checks it is IVS's authorization error. */
async function refusedLikeIvs(page, why) {
  await page.waitForFunction(() => window.viewer?.errors.length || window.viewer?.states.includes('Playing'),
    null, { timeout: 30_000 });
  const { errors, states } = await page.evaluate(() => ({ errors: window.viewer.errors, states: window.viewer.states }));
  assert(!states.includes('Playing'), `${why}: it played`);
  const e = errors[0];
  assert(e.type === 'ErrorAuthorization' && e.code === 7 && e.source === 'MasterPlaylist'
    && e.message === 'invalid_playback_auth_token', `${why}: ${JSON.stringify(e)}`);
}

const tamper = (url) => {
  const [base, token] = url.split('?token=');
  const [h, p, s] = token.split('.');
  const payload = JSON.parse(Buffer.from(p, 'base64url'));
  payload['aws:channel-arn'] = payload['aws:channel-arn'].replace(/\/[^/]+$/, '/AAAAAAAAAAAA');
  return `${base}?token=${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
};

try {
  await check('the viewer page plays the demo channel', async () => {
    const page = await open('');
    // 10 s: across a loop of the 8 s clip (a discontinuity) too.
    const advanced = await playsFor(page, 10);
    mkdirSync(join(root, 'target'), { recursive: true });
    await page.screenshot({ path: join(root, 'target', 'viewer-playing.png') });
    console.log(`  video time advanced ${advanced.toFixed(2)} s in 10 s; screenshot target/viewer-playing.png`);
    await page.close();
  });

  await check('a viewer token with strict origin, resolution cap and viewer id plays', async () => {
    // Strict origin enforcement: the page's origin is checked on every playlist and segment.
    const t = await mint({ viewer_id: 'carol', origins: [new URL(api).origin], strict_origin: true, maximum_resolution: 'HD' });
    const page = await open(`?src=${encodeURIComponent(t.playback_url)}`);
    await playsFor(page, 3);
    await page.close();
  });

  // Bad tokens, each failing as against IVS.
  const bad = [];
  bad.push(['expired', async () => {
    const t = await mint({ viewer_id: 'dave', ttl_seconds: 1 });
    await new Promise((r) => setTimeout(r, 2_500));
    return t.playback_url;
  }]);
  bad.push(['tampered', async () => tamper((await mint({})).playback_url)]);
  bad.push(['wrong channel', async () => {
    // A valid token of another channel, on the demo channel's playback URL.
    const key = join(work, 'keys', 'playback-key.pem');
    const other = demoArn.replace(/\/[^/]+$/, '/ZZZZZZZZZZZZ');
    const token = execFileSync(bin, ['token', '--key', key, '--channel-arn', other, '--ttl', '60']).toString().trim();
    return `${(await mint({})).playback_url.split('?')[0]}?token=${token}`;
  }]);
  bad.push(['single-use, reused', async () => {
    const t = await mint({ single_use: true });
    const first = await fetch(t.playback_url);
    assert(first.status === 200, `first use answered ${first.status}`);
    return t.playback_url;
  }]);
  bad.push(['revoked viewer', async () => {
    const t = await mint({ viewer_id: 'mallory' });
    await admin('/admin/v1/viewers/revoke', { sessions: [{ channel: 'demo', viewer_id: 'mallory' }], block_seconds: 60 });
    return t.playback_url;
  }]);
  bad.push(['wrong origin', async () => (await mint({ origins: ['https://elsewhere.example.com'] })).playback_url]);
  bad.push(['deleted key', async () => {
    const t = await mint({ viewer_id: 'erin' });
    const rotated = await admin('/admin/v1/keys/rotate');
    const revoked = await admin(`/admin/v1/keys/${rotated.retired}/revoke`);
    assert(revoked.unexpired_tokens_killed >= 1, JSON.stringify(revoked));
    return t.playback_url;
  }]);
  for (const [why, make] of bad) {
    await check(`${why} token: ErrorAuthorization from MasterPlaylist`, async () => {
      const url = await make();
      const page = await open(`?src=${encodeURIComponent(url)}`);
      await refusedLikeIvs(page, why);
      await page.close();
    });
  }

  await check('a rotation while the page reloads every 3 s fails no load', async () => {
    const page = await open('');
    let loads = 0;
    let rotations = 0;
    const rotating = (async () => {
      for (let i = 0; i < 2; i += 1) {
        await new Promise((r) => setTimeout(r, 4_000));
        const r = await admin('/admin/v1/keys/rotate');
        rotations += 1;
        console.log(`  rotated to ${r.active} in ${r.took_ms} ms`);
      }
    })();
    const until = Date.now() + 14_000;
    while (Date.now() < until) {
      await page.reload();
      await playsFor(page, 1);
      loads += 1;
    }
    await rotating;
    assert(rotations === 2 && loads >= 4, `${loads} loads, ${rotations} rotations`);
    console.log(`  ${loads} loads across ${rotations} rotations, all played`);
    await page.close();
  });
} finally {
  await browser.close();
  serve.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}

console.log(`\n${results.length - failures} passed, ${failures} failed`);
if (failures) {
  console.log(serveLog.filter((l) => !l.includes('"target":"audit"')).slice(-30).join('\n'));
  process.exit(1);
}
