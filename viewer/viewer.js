// The viewer page: get a token for a channel from the token service, play it in the Amazon IVS Web
// Player, and show the player's state, errors and timed-metadata cues (PutMetadata payloads).
// `window.viewer` keeps them for the browser tests.
import { create, isPlayerSupported, PlayerEventType, PlayerState } from 'amazon-ivs-player';

const params = new URLSearchParams(window.location.search);
const viewer = { states: [], errors: [], cues: [], src: null };
window.viewer = viewer;

const $ = (id) => document.getElementById(id);
const show = (id, text) => { $(id).textContent = text; };

function fail(error) {
  viewer.errors.push(error);
  show('error', JSON.stringify(error, null, 2));
}

// A cue's text is whatever the channel's owner sent with PutMetadata: it goes into the page as text
// (textContent), never as markup.
function showCue(cue, quality) {
  const item = document.createElement('li');
  const when = document.createElement('time');
  when.textContent = `${new Date().toISOString().slice(11, 23)} (video ${cue.startTime.toFixed(3)} s, ${quality})`;
  const text = document.createElement('code');
  text.textContent = cue.text;
  item.append(when, ' ', text);
  const list = $('cues');
  list.prepend(item);
  // The newest 50 are enough to read; the page never grows without bound.
  while (list.children.length > 50) list.lastElementChild.remove();
  show('cue-count', String(viewer.cues.length));
}

/** Pins the quality named in `?quality=` (the player's name, e.g. 360p) once the player knows its qualities. */
function pinQuality(player, name) {
  const quality = player.getQualities().find((q) => q.name === name);
  if (!quality) {
    fail({ type: 'Quality', message: `no quality ${name}; the stream has ${player.getQualities().map((q) => q.name).join(', ')}` });
    return;
  }
  // The player ignores setQuality while the video element shows native controls (amazon-ivs-player
  // 1.56.1, dist/index.js: `this.getHTMLVideoElement().controls || this.postMessage("setQuality", ...)`).
  $('video').controls = false;
  player.setAutoQualityMode(false);
  player.setQuality(quality);
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
  // Timed metadata (PutMetadata): fired when the playhead reaches the cue.
  player.addEventListener(PlayerEventType.TEXT_METADATA_CUE, (cue) => {
    const quality = player.getQuality()?.name ?? '';
    viewer.cues.push({
      text: cue.text, owner: cue.owner, description: cue.description, startTime: cue.startTime,
      receivedAt: Date.now(), quality,
    });
    showCue(cue, quality);
  });
  if (params.get('quality')) {
    // Once playing: a quality set at READY is replaced by the player's own first choice.
    const pin = () => {
      player.removeEventListener(PlayerState.PLAYING, pin);
      pinQuality(player, params.get('quality'));
    };
    player.addEventListener(PlayerState.PLAYING, pin);
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
