// The namespace's audit log, newest first, fifty to a page; each entry links to where its
// subject can be seen: a domain's or cluster's history (deleted ones too: their history stays),
// the credentials, the members and users, the namespace itself.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session, setNamespace } from '../api.js';
import { link, navigate } from '../router.js';
import { button, empty, failed, loading } from '../ui.js';

const PAGE = 50;

function subject(e) {
  if (e.kind === 'domain' || e.kind === 'cluster') {
    return link(`/${e.kind}s/${encodeURIComponent(e.name)}/history`, e.name);
  }
  if (e.kind === 'credential') return link('/credentials', e.name);
  if (e.kind === 'member' || e.kind === 'user' || e.kind === 'group_binding') return link('/members', e.name);
  if (e.kind === 'namespace') {
    return h('a', {
      href: '/ui/domains',
      onClick: (ev) => { ev.preventDefault(); setNamespace(e.name); navigate('/domains'); },
    }, e.name);
  }
  return e.name;
}

export const Audit = defineComponent({
  setup() {
    const state = reactive({ entries: null, total: 0, offset: 0, error: '' });
    async function load() {
      state.error = '';
      state.entries = null;
      try {
        const r = await api.get(`/api/v1/audit?limit=${PAGE}&offset=${state.offset}`);
        state.entries = r.entries || [];
        state.total = r.total;
      } catch (err) {
        state.error = err.message;
      }
    }
    const go = (offset) => { state.offset = offset; load(); };
    watch(() => session.namespace, () => go(0), { immediate: true });
    return () => {
      const header = h('div', { class: 'toolbar' }, [h('h1', 'Audit log'), button('Refresh', load)]);
      if (state.error) return h('section', [header, failed(state.error, load)]);
      if (state.entries === null) return h('section', [header, loading('the audit log')]);
      if (!state.entries.length) return h('section', [header, empty(`Nothing has changed in namespace "${session.namespace}" yet.`)]);
      const last = state.offset + state.entries.length;
      return h('section', [
        header,
        h('table', { class: 'list', 'aria-label': 'audit log' }, [
          h('thead', h('tr', ['Revision', 'Kind', 'Name', 'Action', 'Who', 'When'].map((t) => h('th', t)))),
          h('tbody', state.entries.map((e) => h('tr', { key: `${e.revision}-${e.kind}-${e.name}` }, [
            h('td', String(e.revision)),
            h('td', e.kind),
            h('td', subject(e)),
            h('td', e.action),
            h('td', e.operator || ''),
            h('td', new Date(e.timestamp).toLocaleString()),
          ]))),
        ]),
        h('nav', { class: 'pager', 'aria-label': 'pages' }, [
          button('Previous', () => go(Math.max(0, state.offset - PAGE)), { disabled: state.offset === 0 }),
          h('span', `${state.offset + 1}–${last} of ${state.total}`),
          button('Next', () => go(state.offset + PAGE), { disabled: last >= state.total }),
        ]),
      ]);
    };
  },
});
