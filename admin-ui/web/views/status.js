// Status of the namespace, refreshed every five seconds: its revision, the controller (in a
// cluster of hermes nodes, the raft leader) and every gateway instance with the revision of
// the configuration it serves.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session } from '../api.js';
import { button, empty, failed, loading, poll } from '../ui.js';

const EVERY_MS = 5000;
const when = (t) => (t ? new Date(t).toLocaleString() : '—');

export const Status = defineComponent({
  setup() {
    const state = reactive({ status: null, revision: null, error: '', at: null });
    async function load() {
      try {
        const [status, revision] = await Promise.all([api.get('/api/v1/status'), api.get('/api/v1/config/revision')]);
        state.status = status;
        state.revision = revision.revision;
        state.error = '';
        state.at = new Date();
      } catch (err) {
        state.error = err.message;
      }
    }
    const refresh = poll(EVERY_MS, load);
    watch(() => session.namespace, () => { state.status = null; refresh(); });
    return () => {
      const header = h('div', { class: 'toolbar' }, [
        h('h1', 'Status'),
        state.at ? h('small', { class: 'hint' }, `Updated ${state.at.toLocaleTimeString()}`) : null,
        button('Refresh', refresh),
      ]);
      if (!state.status) return h('section', [header, state.error ? failed(state.error, refresh) : loading('the status')]);
      const s = state.status;
      const c = s.controller;
      const instances = s.instances || [];
      return h('section', [
        header,
        state.error ? h('p', { class: 'error', role: 'alert' }, `The last refresh failed: ${state.error}`) : null,
        h('dl', { class: 'facts' }, [
          h('dt', 'Namespace revision'), h('dd', { 'data-testid': 'revision' }, String(state.revision)),
          h('dt', 'Gateway instances'), h('dd', { 'data-testid': 'instances' }, `${instances.length}, ${instances.filter((i) => i.status === 'running').length} running`),
          h('dt', 'Controller'), h('dd', c
            ? `${c.id}: ${c.status}${c.embedded ? ` (the raft leader, node ${c.raft_member_id}, term ${c.raft_term}, propagates configuration)` : ''}, at revision ${c.config_revision}, last heartbeat ${when(c.last_heartbeat_at)}`
            : 'none reports'),
        ]),
        instances.length
          ? h('div', { class: 'table-scroll' }, h('table', { class: 'list', 'aria-label': 'gateway instances' }, [
            h('thead', h('tr', ['Instance', 'Status', 'Serving revision', 'Started', 'Registered', 'Last keepalive'].map((t) => h('th', t)))),
            h('tbody', instances.map((i) => h('tr', { key: i.id }, [
              h('td', i.id),
              h('td', i.status),
              // The revision of the last configuration change the instance applied; changes that
              // are not configuration (credentials, members) move the namespace's on alone.
              h('td', String(i.config_revision)),
              h('td', when(i.started_at)),
              h('td', when(i.registered_at)),
              h('td', when(i.last_keepalive_at)),
            ]))),
          ]))
          : empty('No gateway instance has registered in this namespace.'),
      ]);
    };
  },
});
