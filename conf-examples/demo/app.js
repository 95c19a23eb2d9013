// The demo page of ngx_http_sse_module: plain JS, no build step, nothing
// loaded from elsewhere.  Three parts:
//   - a subscriber: new EventSource('/events/<channels>'), its events as they
//     arrive, its state, how often it (re)opened, the last event id;
//   - a publisher: POST /publish/<channel>?event=<type> with the data;
//   - the hub, live: new EventSource('/status') answers one "stats" event a
//     second (the status JSON plus deliveries_per_s and publishes_per_s),
//     drawn as a chart of the last minute.
'use strict';

const $ = (id) => document.getElementById(id);
const MAX_ROWS = 200;

// ------------------------------------------------------------ subscribe

let source = null;
let opens = 0;
let count = 0;
const listening = new Set();

function setState(el, cls, text) {
  el.className = cls;
  el.textContent = text;
}

function show(e) {
  const tr = document.createElement('tr');
  const cells = [e.lastEventId, e.type, e.data, new Date().toLocaleTimeString()];
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.appendChild(td);
  }
  tr.cells[2].className = 'data';
  const body = $('events');
  body.prepend(tr);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  $('count').textContent = String(++count);
  if (e.lastEventId) $('last-id').textContent = e.lastEventId;
}

// EventSource hands an event with an "event:" type only to listeners of
// that type ("message" is the default one)
function listen(type) {
  if (!type || listening.has(type)) return;
  listening.add(type);
  source.addEventListener(type, show);
}

function typesWanted() {
  return $('types').value.split(/[\s,]+/).filter(Boolean);
}

function subscribe() {
  if (source) source.close();
  const channels = $('channels').value.trim() || 'news';
  const url = '/events/' + encodeURI(channels);
  $('url').textContent = "new EventSource('" + url + "')";
  opens = 0;
  $('opens').textContent = '0';
  $('reconnects').textContent = '0';
  $('last-id').textContent = 'none';
  listening.clear();
  source = new EventSource(url);
  const mine = source;
  for (const t of typesWanted()) listen(t);
  setState($('state'), 'connecting', 'connecting');

  source.onopen = () => {
    opens++;
    $('opens').textContent = String(opens);
    $('reconnects').textContent = String(opens - 1);
    setState($('state'), 'open', 'open');
    $('hint').textContent = 'The browser reconnects by itself and sends the last event id it saw '
      + 'as Last-Event-ID: nginx replays what it missed.';
  };
  source.onerror = () => {
    if (mine.readyState === EventSource.CLOSED) {
      setState($('state'), 'closed', 'closed');
      // EventSource does not say why: ask with HEAD (headers only, nothing subscribed)
      fetch(url, { method: 'HEAD' }).then(
        (r) => { $('hint').textContent = 'The stream was refused: the server answers ' + r.status
                   + ' ' + r.statusText + '. Subscribe again to retry.'; },
        () => { $('hint').textContent = 'The server cannot be reached. Subscribe again to retry.'; });
    } else {
      setState($('state'), 'connecting', 'reconnecting');
      const last = $('last-id').textContent;
      $('hint').textContent = last === 'none'
        ? 'Connection lost: the browser reconnects by itself.'
        : 'Connection lost: the browser reconnects by itself with Last-Event-ID: ' + last + '.';
    }
  };
  $('pub-channel').value = channels.split(',')[0];
  updateCurl();
}

$('subscribe').addEventListener('submit', (ev) => {
  ev.preventDefault();
  subscribe();
});

// ------------------------------------------------------------ publish

function updateCurl() {
  const ch = $('pub-channel').value.trim() || 'news';
  const type = $('pub-type').value.trim();
  $('curl').textContent = "curl -d 'hello' '" + location.origin + '/publish/' + ch
    + (type ? '?event=' + type : '') + "'";
}
$('pub-channel').addEventListener('input', updateCurl);
$('pub-type').addEventListener('input', updateCurl);

$('publish').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const channel = $('pub-channel').value.trim() || 'news';
  const type = $('pub-type').value.trim();
  const data = $('pub-data').value;
  if (type && !listening.has(type)) {
    listen(type);
    $('types').value = [...listening].join(' ');
  }
  const url = '/publish/' + encodeURI(channel) + (type ? '?event=' + encodeURIComponent(type) : '');
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain; charset=utf-8' },
      body: data,
    });
    $('answer').textContent = res.status + ' ' + res.statusText + ': ' + (await res.text()).trim();
    if (res.ok) $('pub-data').value = '';
  } catch (err) {
    $('answer').textContent = 'publish failed: ' + err;
  }
});

// ------------------------------------------------------------ the hub

const SLOTS = 60;                       // one a second: the last minute
const samples = [];
const X0 = 44, X1 = 596, Y0 = 140, Y1 = 10;

function niceMax(v) {
  if (!(v > 1)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function points(key, max) {
  const step = (X1 - X0) / (SLOTS - 1);
  const first = SLOTS - samples.length;
  return samples.map((s, i) => {
    const x = X0 + (first + i) * step;
    const y = Y0 - (Y0 - Y1) * Math.min(s[key], max) / max;
    return x.toFixed(1) + ',' + y.toFixed(1);
  }).join(' ');
}

function draw() {
  const rateMax = niceMax(Math.max(...samples.map((s) => Math.max(s.d, s.p))));
  const subsMax = niceMax(Math.max(...samples.map((s) => s.s)));
  $('axis-rate').textContent = rateMax + '/s';
  $('axis-subs').textContent = String(subsMax);
  $('line-deliveries').setAttribute('points', points('d', rateMax));
  $('line-publishes').setAttribute('points', points('p', rateMax));
  $('line-subscribers').setAttribute('points', points('s', subsMax));
  $('chart').dataset.samples = String(samples.length);
}

function onStats(e) {
  let st;
  try { st = JSON.parse(e.data); } catch (err) { return; }
  samples.push({ d: Number(st.deliveries_per_s) || 0, p: Number(st.publishes_per_s) || 0,
                 s: Number(st.subscribers) || 0 });
  if (samples.length > SLOTS) samples.shift();
  $('now-deliveries').textContent = String(st.deliveries_per_s);
  $('now-publishes').textContent = String(st.publishes_per_s);
  $('now-subscribers').textContent = String(st.subscribers);
  $('now-channels').textContent = String(st.channels);
  $('now-kept').textContent = String(st.events_kept);
  draw();
}

const stats = new EventSource('/status');
stats.addEventListener('stats', onStats);
stats.onopen = () => setState($('hub-state'), 'open', 'live');
stats.onerror = () => {
  if (stats.readyState === EventSource.CLOSED) {
    setState($('hub-state'), 'closed', 'no stats stream: /status did not answer text/event-stream');
  } else {
    setState($('hub-state'), 'connecting', 'reconnecting');
  }
};

// ------------------------------------------------------------ start

const wanted = new URLSearchParams(location.search).get('channels');
if (wanted) $('channels').value = wanted;
subscribe();
