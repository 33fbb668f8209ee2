// Domains and clusters: a searchable, paged list, and deletion with confirmation.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session } from '../api.js';
import { link } from '../router.js';
import { button, empty, failed, loading, paginate } from '../ui.js';

const SUMMARY = {
  domains: (d) => `${(d.hosts || []).join(', ')} · ${(d.routes || []).length} route(s)`,
  clusters: (c) => c.discovery_type === 'consul'
    ? `Consul service ${c.service_name || ''} · ${c.type || 'roundrobin'}`
    : `${(c.nodes || []).length} node(s) · ${c.type || 'roundrobin'}`,
};

export const ResourceList = defineComponent({
  props: { kind: { type: String, required: true } },
  setup(props) {
    const state = reactive({ items: null, error: '', search: '', page: 1, notice: '' });
    async function load() {
      state.error = '';
      state.items = null;
      try {
        const r = await api.get(`/api/v1/${props.kind}`);
        state.items = r[props.kind] || [];
      } catch (err) {
        state.error = err.message;
      }
    }
    async function remove(name) {
      if (!window.confirm(`Delete ${props.kind.slice(0, -1)} "${name}"? Its history stays, and it can be rolled back.`)) return;
      try {
        await api.del(`/api/v1/${props.kind}/${encodeURIComponent(name)}`);
        state.notice = `Deleted "${name}".`;
        await load();
      } catch (err) {
        state.error = err.message;
      }
    }
    watch(() => [props.kind, session.namespace], () => { state.page = 1; state.search = ''; load(); }, { immediate: true });
    return () => {
      const singular = props.kind.slice(0, -1);
      const header = h('div', { class: 'toolbar' }, [
        h('h1', props.kind === 'domains' ? 'Domains' : 'Clusters'),
        h('input', {
          type: 'search', placeholder: `Search ${props.kind}`, 'aria-label': `Search ${props.kind}`,
          value: state.search, onInput: (e) => { state.search = e.target.value; state.page = 1; },
        }),
        link(`/${props.kind}/new`, `New ${singular}`, { class: 'button primary' }),
      ]);
      let body;
      if (state.error) body = failed(state.error, load);
      else if (state.items === null) body = loading(props.kind);
      else {
        const needle = state.search.trim().toLowerCase();
        const items = state.items.filter((it) => !needle
          || it.name.toLowerCase().includes(needle)
          || SUMMARY[props.kind](it).toLowerCase().includes(needle));
        if (!state.items.length) body = empty(`No ${props.kind} in namespace "${session.namespace}" yet.`, link(`/${props.kind}/new`, `Create the first ${singular}`, { class: 'button' }));
        else if (!items.length) body = empty(`No ${props.kind} match "${state.search}".`);
        else {
          const { shown, nav } = paginate(items, state);
          body = [
            h('table', { class: 'list' }, [
              h('thead', h('tr', [h('th', 'Name'), h('th', 'Summary'), h('th', { class: 'actions' }, 'Actions')])),
              h('tbody', shown.map((it) => h('tr', { key: it.name }, [
                h('td', link(`/${props.kind}/${encodeURIComponent(it.name)}`, it.name)),
                h('td', SUMMARY[props.kind](it)),
                h('td', { class: 'actions' }, [
                  link(`/${props.kind}/${encodeURIComponent(it.name)}`, 'Edit', { class: 'button small', 'aria-label': `Edit ${it.name}` }),
                  link(`/${props.kind}/${encodeURIComponent(it.name)}/history`, 'History', { class: 'button small', 'aria-label': `History of ${it.name}` }),
                  button('Delete', () => remove(it.name), { class: 'small danger', 'aria-label': `Delete ${it.name}` }),
                ]),
              ]))),
            ]),
            nav,
          ];
        }
      }
      return h('section', [header, state.notice ? h('p', { class: 'notice', role: 'status' }, state.notice) : null, body]);
    };
  },
});
