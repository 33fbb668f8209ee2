// The raft cluster as the node the browser talks to sees it, refreshed every two seconds: who
// leads, each member's role, term, log indexes and lag, and the node's own health checks; and,
// for admins, adding a member (as a learner), promoting and removing one. The API refuses what
// would cost the cluster its quorum, and the page shows why.
import { defineComponent, h, reactive } from 'vue';
import { api } from '../api.js';
import { button, changer, failed, loading, poll } from '../ui.js';

const EVERY_MS = 2000;

export const Cluster = defineComponent({
  setup() {
    const state = reactive({ status: null, error: '', at: null, add: { id: '', peer_url: '' }, actionError: '', notice: '' });
    const change = changer(state, () => refresh(), 'actionError');
    async function load() {
      try {
        state.status = await api.get('/api/v1/cluster/status');
        state.error = '';
        state.at = new Date();
      } catch (err) {
        state.error = err.message;
      }
    }
    const refresh = poll(EVERY_MS, load);
    return () => {
      const header = h('div', { class: 'toolbar' }, [
        h('h1', 'Cluster'),
        state.at ? h('small', { class: 'hint', 'aria-live': 'off' }, `Updated ${state.at.toLocaleTimeString()}`) : null,
      ]);
      if (!state.status) return h('section', [header, state.error ? failed(state.error, refresh) : loading('the cluster')]);
      const s = state.status;
      const me = s.node;
      const leader = s.members.find((m) => m.info && m.info.role === 'leader');
      const leaderLog = leader?.info?.last_log_index ?? me.last_log_index;
      return h('section', [
        header,
        state.error ? h('p', { class: 'error', role: 'alert' }, `The last refresh failed: ${state.error}`) : null,
        h('dl', { class: 'facts' }, [
          h('dt', 'This page talks to'), h('dd', `node ${me.id} (${me.role}), ${location.host}`),
          h('dt', 'Leader'), h('dd', { 'data-testid': 'leader' }, me.leader ? `node ${me.leader}` : 'none (no quorum)'),
          h('dt', 'Term'), h('dd', String(me.term)),
          h('dt', 'Health'), h('dd', { class: s.health === 'healthy' ? 'notice' : 'error' }, s.health),
          ...Object.entries(s.checks).flatMap(([name, result]) => [
            h('dt', `Check ${name}`), h('dd', { class: result === 'ok' ? 'notice' : 'error' }, result),
          ]),
        ]),
        h('div', { class: 'table-scroll' }, h('table', { class: 'list', 'aria-label': 'members' }, [
          h('thead', h('tr', ['Member', 'Peer address', 'Kind', 'Role', 'Term', 'Last log', 'Commit', 'Applied', 'Lag', 'Revision', 'Version', 'Problem', '']
            .map((t) => h('th', t)))),
          h('tbody', s.members.map((m) => {
            const i = m.info;
            return h('tr', { key: m.id, class: i?.role === 'leader' ? 'leader' : undefined }, [
              h('td', `node ${m.id}${m.id === me.id ? ' (this one)' : ''}`),
              h('td', m.peer_url),
              h('td', m.voter ? 'voter' : 'learner'),
              h('td', i ? i.role : 'unreachable'),
              h('td', i ? String(i.term) : ''),
              h('td', i ? String(i.last_log_index) : ''),
              h('td', i ? String(i.commit_index) : ''),
              h('td', i ? String(i.applied_index) : ''),
              h('td', i ? String(Math.max(0, leaderLog - i.applied_index)) : ''),
              h('td', i ? String(i.revision) : ''),
              h('td', i ? i.version : ''),
              h('td', { class: 'error' }, m.error || ''),
              h('td', { class: 'actions' }, [
                m.voter ? null : button('Promote', () => change(`Node ${m.id} is now a voter.`, () => api.post(`/api/v1/cluster/members/${m.id}/promote`)), { class: 'small', 'aria-label': `Promote node ${m.id}` }),
                button('Remove', () => {
                  if (window.confirm(`Remove node ${m.id} from the cluster? Its data stays on its disk; it no longer takes part.`)) {
                    change(`Node ${m.id} was removed.`, () => api.del(`/api/v1/cluster/members/${m.id}`));
                  }
                }, { class: 'small danger', 'aria-label': `Remove node ${m.id}` }),
              ]),
            ]);
          })),
        ])),
        state.actionError ? h('p', { class: 'error', role: 'alert' }, state.actionError) : null,
        state.notice ? h('p', { class: 'notice', role: 'status' }, state.notice) : null,
        h('form', { class: 'inline', 'aria-label': 'add a member', onSubmit: (e) => {
          e.preventDefault();
          change(`Node ${state.add.id} was added as a learner; promote it once it has caught up.`,
            () => api.post('/api/v1/cluster/members', { id: Number(state.add.id), peer_url: state.add.peer_url.trim() }));
        } }, [
          h('input', { type: 'number', min: 1, required: true, 'aria-label': 'New member id', placeholder: 'id', value: state.add.id, onInput: (e) => { state.add.id = e.target.value; } }),
          h('input', { type: 'url', required: true, 'aria-label': 'New member peer URL', placeholder: 'http://host:9081', value: state.add.peer_url, onInput: (e) => { state.add.peer_url = e.target.value; } }),
          h('button', { type: 'submit', class: 'small' }, 'Add member'),
        ]),
        h('p', { class: 'hint' }, 'Admins only. The new node must be started with the same cluster secret; hermes member does the same from a shell.'),
      ]);
    };
  },
});
