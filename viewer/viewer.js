// The viewer page: get a token for a channel from the token service, play it in the Amazon IVS Web
// Player, and show the player's state and errors. `window.viewer` keeps them for the browser tests.
import { create, isPlayerSupported, PlayerEventType, PlayerState } from 'amazon-ivs-player';

const params = new URLSearchParams(window.location.search);
const viewer = { states: [], errors: [], src: null };
window.viewer = viewer;

const $ = (id) => document.getElementById(id);
const show = (id, text) => { $(id).textContent = text; };

function fail(error) {
  viewer.errors.push(error);
  show('error', JSON.stringify(error, null, 2));
}

async function playbackUrl() {
  const src = params.get('src');
  if (src) {
    show('channel', 'given playback URL');
    return src;
  }
  const channel = params.get('channel') || 'demo';
  show('channel', channel);
  const answer = await fetch('/v1/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ channel }),
  });
  const body = await answer.json();
  if (!answer.ok) {
    throw Object.assign(new Error(body.error?.message ?? `token service answered ${answer.status}`), {
      type: 'TokenService', code: answer.status, source: '/v1/token', detail: body.error,
    });
  }
  show('channel', body.channel_arn);
  show('expires', new Date(body.expires_at * 1000).toISOString());
  return body.playback_url;
}

async function main() {
  if (!isPlayerSupported) {
    fail({ type: 'Unsupported', message: 'this browser cannot run the IVS player (no WebAssembly or MSE)' });
    return;
  }
  const here = window.location.href;
  const player = create({
    wasmWorker: new URL('amazon-ivs-wasmworker.min.js', here).href,
    wasmBinary: new URL('amazon-ivs-wasmworker.min.wasm', here).href,
  });
  viewer.player = player;
  player.attachHTMLVideoElement($('video'));
  // Muted, so that the browser lets it start without a click.
  player.setMuted(true);
  for (const state of Object.values(PlayerState)) {
    player.addEventListener(state, () => {
      viewer.states.push(state);
      show('state', state);
    });
  }
  player.addEventListener(PlayerEventType.ERROR, (error) => {
    fail({ type: error.type, code: error.code, source: error.source, message: error.message });
  });
  try {
    viewer.src = await playbackUrl();
  } catch (e) {
    fail({ type: e.type ?? 'Error', code: e.code, source: e.source, message: e.message, detail: e.detail });
    return;
  }
  player.setAutoplay(true);
  player.load(viewer.src);
}

main();
