// Live traffic of the whole cluster, from the nodes' own metrics summed by the node this page
// talks to (/api/v1/traffic, every two seconds): per route and per cluster the requests per
// second, error rate and latency percentiles, drawn as small charts, and every upstream node's
// health and breaker as each gateway sees it.
import { defineComponent, h, reactive } from 'vue';
import { api, session } from '../api.js';
import { empty, failed, loading, poll } from '../ui.js';

const EVERY_MS = 2000;
const KEEP = 60; // two minutes of samples
const WINDOW = 5; // percentiles over the last ten seconds

// The q-quantile (seconds) of the requests between two cumulative bucket lists.
export function quantile(q, before, after) {
  const delta = after.buckets.map(([le, c], i) => [le, c - (before.buckets[i]?.[1] ?? 0)]);
  const total = after.count - before.count;
  if (total <= 0) return null;
  const target = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of delta) {
    if (count >= target) {
      const span = count - prevCount;
      return span > 0 ? prevLe + (le - prevLe) * ((target - prevCount) / span) : le;
    }
    prevLe = le;
    prevCount = count;
  }
  return Infinity; // beyond the last bucket
}

const ms = (s) => (s === null ? '—' : s === Infinity ? 'over the last bucket' : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`);
const pct = (x) => (x === null ? '—' : `${(x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1)} %`);

function sparkline(values, label) {
  const w = 120;
  const top = Math.max(...values, 1);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(26 - (v / top) * 24).toFixed(1)}`).join(' ');
  return h('svg', { class: 'spark', viewBox: `0 0 ${w} 28`, width: w, height: 28, role: 'img', 'aria-label': label }, [
    h('polyline', { points, fill: 'none', stroke: 'currentColor', 'stroke-width': 1.5 }),
  ]);
}

// For each key, its series over the kept samples.
function seriesOf(samples, pick) {
  const out = new Map();
  samples.forEach((s, i) => {
    for (const item of pick(s)) {
      const key = item.key;
      if (!out.has(key)) out.set(key, { key, label: item.label, points: new Array(samples.length).fill(null) });
      out.get(key).points[i] = { at: s.at_ms, ...item.series };
    }
  });
  return [...out.values()];
}

function row(entry, kind) {
  const pts = entry.points;
  const rates = [];
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1];
    const b = pts[i];
    rates.push(a && b && b.at > a.at ? Math.max(0, (b.requests - a.requests) / ((b.at - a.at) / 1000)) : 0);
  }
  const last = pts[pts.length - 1];
  // The oldest sample of the window in which the series exists.
  const from = pts.slice(Math.max(0, pts.length - 1 - WINDOW), -1).find((p) => p) || null;
  const requests = last && from ? last.requests - from.requests : 0;
  const errors = last && from ? last.errors - from.errors : 0;
  const ok = last && from && requests >= 0 && last.count > from.count;
  return h('tr', { key: entry.key }, [
    h('th', { scope: 'row' }, entry.label),
    h('td', { 'data-testid': `${kind}-total` }, last ? String(last.requests) : '—'),
    h('td', rates.length ? `${rates[rates.length - 1].toFixed(1)}` : '—'),
    h('td', sparkline(rates.length ? rates : [0], `requests per second of ${entry.label}, last ${rates.length * 2} s`)),
    h('td', ok && requests > 0 ? pct(errors / requests) : '—'),
    h('td', ok ? ms(quantile(0.5, from, last)) : '—'),
    h('td', ok ? ms(quantile(0.99, from, last)) : '—'),
  ]);
}

function table(label, kind, entries) {
  return h('table', { class: 'list traffic', 'aria-label': label }, [
    h('thead', h('tr', [label === 'routes' ? 'Route' : 'Cluster', 'Requests', 'Requests/s', 'Last 2 minutes', 'Errors (5xx)', 'p50', 'p99']
      .map((t) => h('th', t)))),
    h('tbody', entries.map((e) => row(e, kind))),
  ]);
}

export const Traffic = defineComponent({
  setup() {
    const state = reactive({ samples: [], error: '' });
    let namespace = session.namespace;
    async function load() {
      try {
        const t = await api.get('/api/v1/traffic');
        if (namespace !== session.namespace) { state.samples = []; namespace = session.namespace; }
        state.samples = [...state.samples.slice(-(KEEP - 1)), t];
        state.error = '';
      } catch (err) {
        state.error = err.message;
      }
    }
    const refresh = poll(EVERY_MS, load);
    return () => {
      const header = h('div', { class: 'toolbar' }, [h('h1', 'Traffic')]);
      const samples = state.samples;
      if (!samples.length) return h('section', [header, state.error ? failed(state.error, refresh) : loading('traffic')]);
      const latest = samples[samples.length - 1];
      const routes = seriesOf(samples, (s) => s.routes.map((r) => ({ key: `${r.domain}/${r.route}`, label: `${r.domain} / ${r.route}`, series: r })));
      const clusters = seriesOf(samples, (s) => s.clusters.map((c) => ({ key: c.cluster, label: c.cluster, series: c })));
      const missing = latest.nodes.filter((n) => !n.ok);
      return h('section', [
        header,
        state.error ? h('p', { class: 'error', role: 'alert' }, `The last refresh failed: ${state.error}`) : null,
        h('p', { class: 'hint' }, `Summed over ${latest.nodes.filter((n) => n.ok).length} of ${latest.nodes.length} nodes; counts since each node started; rates over 2 s, errors and percentiles over the last ${WINDOW * 2} s.`),
        missing.length ? h('ul', { class: 'errors', role: 'alert' }, missing.map((n) => h('li', `node ${n.id}: ${n.error}`))) : null,
        h('h2', 'Routes'),
        routes.length ? h('div', { class: 'table-scroll' }, table('routes', 'route', routes)) : empty('No request has been routed yet.'),
        h('h2', 'Clusters'),
        clusters.length ? h('div', { class: 'table-scroll' }, table('clusters', 'cluster', clusters)) : empty('No request has reached a cluster yet.'),
        h('h2', 'Upstream nodes'),
        latest.upstreams.length
          ? h('table', { class: 'list', 'aria-label': 'upstream nodes' }, [
            h('thead', h('tr', ['Gateway', 'Cluster', 'Upstream', 'Health', 'Breaker'].map((t) => h('th', t)))),
            h('tbody', latest.upstreams.map((u) => h('tr', { key: `${u.gateway}-${u.cluster}-${u.upstream}` }, [
              h('td', `node ${u.gateway}`),
              h('td', u.cluster),
              h('td', u.upstream),
              h('td', { class: u.healthy === false ? 'error' : undefined }, u.healthy === null || u.healthy === undefined ? 'not probed' : u.healthy ? 'healthy' : 'unhealthy'),
              h('td', { class: u.breaker === 'open' ? 'error' : undefined }, u.breaker || 'no breaker'),
            ]))),
          ])
          : empty('No cluster has health checks or a circuit breaker.'),
      ]);
    };
  },
});
