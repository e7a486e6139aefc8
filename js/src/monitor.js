// RoomMonitor's view: per participant, live plots of send and receive bitrate,
// packet loss, jitter and frame rate (from every participant's own stats, as the
// server gathers them), the media plane's counters, hands and warnings. It asks
// video/classroom/rooms/{room}/monitor with the page's Jupyter session.
import css from './styles.css';
import { request, serverBase } from './jupyter.js';

const POLL_MS = 2000;
const METRICS = [
  ['bitrate_kbps', 'kbit/s', '#1565c0'],
  ['packet_loss', 'loss', '#c62828'],
  ['jitter_ms', 'jitter ms', '#6a1b9a'],
  ['fps', 'fps', '#2e7d32'],
];

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') { node.textContent = value; } else { node.setAttribute(name, value); }
  }
  for (const child of children) { node.append(child); }
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attributes)) { node.setAttribute(name, value); }
  return node;
}

function sparkline(values, colour) {
  const plot = svg('svg', { viewBox: '0 0 100 40', preserveAspectRatio: 'none' });
  const numbers = values.filter((v) => v !== null && Number.isFinite(v));
  if (numbers.length < 2) { return plot; }
  const top = Math.max(...numbers) || 1;
  const step = 100 / (values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(38 - (36 * (v || 0)) / top).toFixed(1)}`);
  plot.append(svg('polyline', { points: points.join(' '), stroke: colour }));
  return plot;
}

function format(name, value) {
  if (value === null || value === undefined) { return '–'; }
  return name === 'packet_loss' ? `${(100 * value).toFixed(1)} %` : value.toFixed(name === 'bitrate_kbps' ? 0 : 1);
}

export function renderMonitor(model, el) {
  const base = serverBase(model.get('_server_url'));
  const title = element('strong', { text: `Room monitor: ${model.get('room')}` });
  const status = element('span', { class: 'jv-note' });
  const warnings = element('ul', { class: 'jv-warnings' });
  const hands = element('div', { class: 'jv-note' });
  const speakers = element('div', { class: 'jv-speaking' });
  const grid = element('div', { class: 'jv-monitor-grid' });
  const root = element('div', { class: 'jv-monitor' }, [title, ' ', status, speakers, warnings, hands, grid]);
  el.append(element('style', { text: css }), root);
  let stopped = false;

  const render = (data) => {
    warnings.textContent = '';
    for (const text of data.warnings) { warnings.append(element('li', { class: 'jv-warning', text })); }
    const speaking = Object.entries(data.speaking || {}).map(([room, who]) => (room === data.room ? who : `${who} (${room})`));
    speakers.textContent = speaking.length ? `Speaking: ${speaking.join(', ')}` : '';
    hands.textContent = data.hands.length ? `Hands: ${data.hands.map((h) => `${h.identity} (${Math.round(h.waiting_seconds)} s)`).join(', ')}` : '';
    const groups = new Map();
    for (const row of data.series) {
      const key = `${row.identity} · ${row.direction} ${row.kind}`;
      if (!groups.has(key)) { groups.set(key, []); }
      groups.get(key).push(row);
    }
    grid.textContent = '';
    for (const [key, rows] of [...groups.entries()].sort()) {
      const recent = rows.slice(-60);
      const card = element('div', { class: 'jv-monitor-card', 'data-series': key }, [element('strong', { text: key })]);
      for (const [name, label, colour] of METRICS) {
        const values = recent.map((row) => row[name]);
        card.append(element('div', { class: 'jv-metric' }, [element('span', { text: label }), element('span', { text: format(name, values[values.length - 1]) })]));
        card.append(sparkline(values, colour));
      }
      grid.append(card);
    }
    const server = data.server.reduce((sum, s) => sum + (s.packets_forwarded || 0), 0);
    status.textContent = `${data.participants.length} participants · server forwarded ${server} packets`;
    model.set('series', data.series);
    model.set('warnings', data.warnings);
    model.save_changes();
  };

  const poll = async () => {
    if (stopped) { return; }
    try {
      render(await request(base, `video/classroom/rooms/${encodeURIComponent(model.get('room'))}/monitor`));
    } catch (error) {
      status.textContent = `${error.code || ''} ${error.message}`;
    }
    if (!stopped) { setTimeout(poll, POLL_MS); }
  };
  poll();
  return () => { stopped = true; };
}
