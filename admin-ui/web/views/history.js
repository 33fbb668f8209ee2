// The history of a domain or cluster: every version with who made it and how, a diff between
// any two, and rollback to one of them.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session } from '../api.js';
import { link } from '../router.js';
import { diffLines } from '../diff.js';
import { button, empty, failed, loading, paginate } from '../ui.js';

export const History = defineComponent({
  props: { kind: { type: String, required: true }, name: { type: String, required: true } },
  setup(props) {
    const singular = () => props.kind.slice(0, -1);
    const state = reactive({ entries: null, error: '', from: null, to: null, page: 1, notice: '' });
    const base = () => `/api/v1/${props.kind}/${encodeURIComponent(props.name)}`;
    async function load() {
      state.error = '';
      state.entries = null;
      try {
        const r = await api.get(`${base()}/history`);
        state.entries = r.history || [];
        // By default: the latest change against the version before it.
        state.to = state.entries[0]?.version ?? null;
        state.from = state.entries[1]?.version ?? state.to;
      } catch (err) {
        state.error = err.message;
      }
    }
    async function rollback(version) {
      if (!window.confirm(`Roll ${singular()} "${props.name}" back to version ${version}? This saves that version as a new one.`)) return;
      try {
        const r = await api.post(`${base()}/rollback/${version}`);
        await load();
        state.notice = `Rolled back to version ${r.rolled_back_to}: now version ${r.new_version}.`;
      } catch (err) {
        state.error = err.message;
      }
    }
    watch(() => [props.kind, props.name, session.namespace], load, { immediate: true });
    const text = (version) => {
      const e = state.entries.find((x) => x.version === version);
      return e && e[singular()] ? JSON.stringify(e[singular()], null, 2) : '';
    };
    return () => {
      const header = h('div', { class: 'toolbar' }, [
        h('h1', `History of ${singular()} ${props.name}`),
        link(`/${props.kind}/${encodeURIComponent(props.name)}`, 'Edit', { class: 'button' }),
        link(`/${props.kind}`, `All ${props.kind}`, { class: 'button' }),
      ]);
      if (state.error) return h('section', [header, failed(state.error, load)]);
      if (state.entries === null) return h('section', [header, loading('history')]);
      if (!state.entries.length) return h('section', [header, empty('No history yet.')]);
      const { shown, nav } = paginate(state.entries, state);
      const radio = (which, version) => h('input', {
        type: 'radio', name: which, checked: state[which] === version,
        'aria-label': `${which === 'from' ? 'Compare from' : 'Compare to'} version ${version}`,
        onChange: () => { state[which] = version; },
      });
      const lines = diffLines(text(state.from), text(state.to));
      return h('section', [
        header,
        state.notice ? h('p', { class: 'notice', role: 'status' }, state.notice) : null,
        h('table', { class: 'list' }, [
          h('thead', h('tr', ['Version', 'When', 'What', 'Who', 'From', 'To', ''].map((t) => h('th', t)))),
          h('tbody', shown.map((e) => h('tr', { key: e.version }, [
            h('td', String(e.version)),
            h('td', new Date(e.timestamp).toLocaleString()),
            h('td', e.action),
            h('td', e.operator || ''),
            h('td', radio('from', e.version)),
            h('td', radio('to', e.version)),
            h('td', { class: 'actions' }, e[singular()]
              ? button('Roll back', () => rollback(e.version), { class: 'small', 'aria-label': `Roll back to version ${e.version}` })
              : null),
          ]))),
        ]),
        nav,
        h('h2', `Changes from version ${state.from} to version ${state.to}`),
        h('pre', { class: 'diff', 'aria-label': 'differences' }, lines.map((l) => h('span', {
          class: l.op === '+' ? 'add' : l.op === '-' ? 'del' : 'same',
        }, `${l.op} ${l.line}\n`))),
      ]);
    };
  },
});
