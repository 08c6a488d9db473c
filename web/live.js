// The live page: a reading of tsserve's /metrics every second (the app's /api/metrics), kept for two
// minutes, turned into points by the same arithmetic as Prometheus' (/lib/live-series.js, compiled
// from src/app/live-series.ts), and drawn as small SVG line charts of our own: no chart library, no
// script from anywhere but this app.
import { modelCharts, serverCharts } from '/lib/live-series.js';

const POLL_MS = 1000;
const KEEP_MS = 120_000;
const SLOTS = KEEP_MS / POLL_MS;
/** A chart spans at least this many readings: the first seconds are not a sliver at the right edge. */
const MIN_SLOTS = 30;
const COLORS = ['#2257c5', '#d9480f', '#2b8a3e', '#862e9c'];
const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 320;
const HEIGHT = 110;

const perSecond = (v) => `${v < 10 ? v.toFixed(1) : Math.round(v)}/s`;
const seconds = (v) => (v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 2 : 1)} ms` : `${v.toFixed(2)} s`);
const count = (v) => String(Math.round(v));
const megabytes = (v) => `${Math.round(v)} MB`;

/** Each model's charts: key in modelCharts, title, what it shows, how its values read. */
const MODEL_CHARTS = [
  ['throughput', 'Throughput', 'predictions a second', perSecond],
  ['errors', 'Errors', 'refused (503: queue full, no worker) and timed out, a second', perSecond],
  ['latency', 'Latency', "p50 and p99 of ts_request_seconds, or the mean from TorchServe's counters before tsserve serves it", seconds],
  ['queue', 'Queue', 'requests waiting for a worker, and room left before the queue refuses', count],
  ['workers', 'Workers', 'workers ready', count],
];
const SERVER_CHARTS = [
  ['responses', 'Answers', 'every API, by status class, a second', perSecond],
  ['memory', 'Memory', "the host's or container's memory in use", megabytes],
];

const history = [];
const $ = (id) => document.getElementById(id);

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/** One chart's lines, the latest point at the right edge; a null value breaks its line. */
function draw(svg, points, format) {
  const names = [...new Set(points.flatMap((p) => Object.keys(p)))];
  const values = points.flatMap((p) => Object.values(p)).filter((v) => v !== null && Number.isFinite(v));
  const top = Math.max(...values, 0) * 1.15 || 1;
  const span = Math.min(SLOTS, Math.max(MIN_SLOTS, points.length));
  const x = (i) => WIDTH - ((points.length - 1 - i) * WIDTH) / (span - 1);
  const y = (v) => HEIGHT - 14 - (v / top) * (HEIGHT - 24);
  const label = (text, attributes) => Object.assign(svgElement('text', { class: 'scale', ...attributes }), { textContent: text });
  svg.replaceChildren(
    svgElement('line', { x1: 0, x2: WIDTH, y1: y(0), y2: y(0), class: 'axis' }),
    label(format(top), { x: 2, y: 10 }),
    label(`${Math.round((span * POLL_MS) / 1000)} s ago`, { x: 2, y: HEIGHT - 2 }),
    label('now', { x: WIDTH - 2, y: HEIGHT - 2, 'text-anchor': 'end' }),
  );
  names.forEach((name, n) => {
    let path = '';
    let drawing = false;
    points.forEach((p, i) => {
      const v = p[name];
      if (v === null || v === undefined || !Number.isFinite(v)) {
        drawing = false;
        return;
      }
      path += `${drawing ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      drawing = true;
    });
    svg.append(svgElement('path', { d: path, stroke: COLORS[n % COLORS.length], class: 'line' }));
  });
  // What the test and a screen reader read: the points drawn, and the latest values.
  svg.dataset.values = JSON.stringify(points.map((p) => names.map((name) => p[name] ?? null)));
  const last = points.at(-1) ?? {};
  svg.setAttribute('aria-label', names.map((name) => `${name} ${last[name] == null ? 'none' : format(last[name])}`).join(', '));
  return names.map((name, n) => [name, last[name], COLORS[n % COLORS.length]]);
}

/** The element `selector` finds in `parent`; the first time, `make()`'s, appended to it. */
function once(parent, selector, make) {
  const found = parent.querySelector(selector);
  if (found) return found;
  const made = make();
  parent.append(made);
  return made;
}

/** A `tag` of `className` with `data`, its inner HTML, and the text of its parts (by selector). */
function made(tag, className, data, html, texts) {
  const element = document.createElement(tag);
  element.className = className;
  Object.assign(element.dataset, data);
  element.innerHTML = html;
  for (const [selector, text] of Object.entries(texts)) element.querySelector(selector).textContent = text;
  return element;
}

/** A figure per chart, made once and redrawn at each reading. */
function figure(container, key, title, about) {
  return once(container, `figure[data-chart="${key}"]`, () => {
    const html = '<figcaption><strong></strong> <span class="about"></span></figcaption><ul class="legend"></ul>';
    const chart = made('figure', 'chart', { chart: key }, html, { strong: title, '.about': about });
    chart.insertBefore(svgElement('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img' }), chart.querySelector('.legend'));
    return chart;
  });
}

function render(container, charts, specs) {
  for (const [key, title, about, format] of specs) {
    const element = figure(container, key, title, about);
    const legend = draw(element.querySelector('svg'), charts[key].slice(-SLOTS), format);
    element.querySelector('.legend').replaceChildren(
      ...legend.map(([name, value, color]) => {
        const li = document.createElement('li');
        li.style.setProperty('--color', color);
        li.textContent = `${name}: ${value == null ? '-' : format(value)}`;
        return li;
      }),
    );
  }
}

/** The section of one model (or of the server), made once. */
function section(id, heading) {
  return once($('live'), `section[data-model="${CSS.escape(id)}"]`, () =>
    made('section', 'live-model', { model: id }, '<h3></h3><div class="charts"></div>', { h3: heading }),
  );
}

async function poll() {
  try {
    const res = await fetch('/api/metrics');
    const body = await res.json();
    if (!res.ok) throw new Error(body.message);
    history.push(body);
    while (history.length > 1 && history[0].at < body.at - KEEP_MS - 10_000) history.shift();
    const models = Object.keys(body.models).sort();
    for (const model of models) render(section(model, model).querySelector('.charts'), modelCharts(history, model), MODEL_CHARTS);
    for (const gone of document.querySelectorAll('section.live-model')) {
      if (gone.dataset.model !== '' && !models.includes(gone.dataset.model)) gone.remove();
    }
    const server = section('', 'Server');
    render(server.querySelector('.charts'), serverCharts(history), SERVER_CHARTS);
    $('live').append(server);
    $('status').textContent = `${models.length} model(s); read at ${new Date(body.at).toLocaleTimeString()}.`;
    $('status').classList.remove('error');
  } catch (err) {
    $('status').textContent = err instanceof SyntaxError ? 'The web app does not answer.' : err.message;
    $('status').classList.add('error');
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

void poll();
