// Grafana dashboards of the namespace, embedded as the original embedded them: a tab each, with
// add, edit and delete. The page's policy lets it frame only the saved dashboards' origins, so
// saving a dashboard at a new address reloads the page.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session } from '../api.js';
import { button, empty, failed, loading } from '../ui.js';

const originOf = (url) => { try { return new URL(url).origin; } catch { return ''; } };

export const Monitoring = defineComponent({
  setup() {
    const state = reactive({ dashboards: null, error: '', active: null, editing: null, formError: '', frameLoading: true });
    async function load() {
      state.error = '';
      try {
        state.dashboards = (await api.get('/api/v1/grafana/dashboards')).dashboards || [];
        if (!state.dashboards.some((d) => d.id === state.active)) state.active = state.dashboards[0]?.id ?? null;
        state.frameLoading = true;
      } catch (err) {
        state.error = err.message;
        state.dashboards ??= [];
      }
    }
    async function save(e) {
      e.preventDefault();
      state.formError = '';
      const known = new Set(state.dashboards.map((d) => originOf(d.url)));
      const d = state.editing;
      try {
        const saved = d.id ? await api.put('/api/v1/grafana/dashboards', d) : await api.post('/api/v1/grafana/dashboards', d);
        state.editing = null;
        state.active = saved.id;
        if (!known.has(originOf(saved.url))) {
          // The page's policy is made when it loads: a new address needs a new load.
          sessionStorage.setItem('hermes_dashboard', String(saved.id));
          location.reload();
          return;
        }
        await load();
      } catch (err) {
        state.formError = err.message;
      }
    }
    async function remove(d) {
      if (!window.confirm(`Remove dashboard "${d.name}" from this namespace?`)) return;
      try {
        await api.del(`/api/v1/grafana/dashboards/${d.id}`);
        await load();
      } catch (err) {
        state.error = err.message;
      }
    }
    const remembered = Number(sessionStorage.getItem('hermes_dashboard'));
    if (remembered) { state.active = remembered; sessionStorage.removeItem('hermes_dashboard'); }
    watch(() => session.namespace, load, { immediate: true });

    function editor() {
      const d = state.editing;
      return h('form', { class: 'card', 'aria-label': 'dashboard', onSubmit: save }, [
        h('h2', d.id ? `Edit ${d.name}` : 'Add a dashboard'),
        h('div', { class: 'field' }, [
          h('label', { for: 'dash-name' }, 'Name'),
          h('input', { id: 'dash-name', value: d.name, required: true, onInput: (e) => { d.name = e.target.value; } }),
        ]),
        h('div', { class: 'field' }, [
          h('label', { for: 'dash-url' }, 'URL'),
          h('input', { id: 'dash-url', type: 'url', value: d.url, required: true, onInput: (e) => { d.url = e.target.value; } }),
          h('small', { class: 'hint' }, 'A Grafana dashboard URL; add &kiosk to hide Grafana\'s menus. Grafana must allow embedding (allow_embedding = true).'),
        ]),
        state.formError ? h('p', { class: 'error', role: 'alert' }, state.formError) : null,
        h('div', { class: 'actions' }, [
          h('button', { type: 'submit', class: 'primary' }, 'Save dashboard'),
          button('Cancel', () => { state.editing = null; }),
        ]),
      ]);
    }

    return () => {
      const header = h('div', { class: 'toolbar' }, [
        h('h1', 'Monitoring'),
        button('Refresh', load),
        button('Add dashboard', () => { state.editing = { name: '', url: '' }; }, { class: 'primary' }),
      ]);
      if (state.dashboards === null) return h('section', [header, loading('the dashboards')]);
      const active = state.dashboards.find((d) => d.id === state.active);
      return h('section', [
        header,
        state.error ? failed(state.error, load) : null,
        state.editing ? editor() : null,
        state.dashboards.length
          ? [
            h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'dashboards' }, state.dashboards.map((d) => h('button', {
              type: 'button', role: 'tab', 'aria-selected': String(d.id === state.active),
              onClick: () => { state.active = d.id; state.frameLoading = true; },
            }, d.name))),
            active
              ? h('div', { role: 'tabpanel' }, [
                h('div', { class: 'toolbar' }, [
                  h('a', { class: 'button small', href: active.url, target: '_blank', rel: 'noopener noreferrer' }, 'Open in Grafana ↗'),
                  button('Edit', () => { state.editing = { ...active }; }, { class: 'small', 'aria-label': `Edit dashboard ${active.name}` }),
                  button('Remove', () => remove(active), { class: 'small danger', 'aria-label': `Remove dashboard ${active.name}` }),
                ]),
                state.frameLoading ? h('p', { class: 'state', role: 'status' }, `Loading ${active.name}…`) : null,
                h('iframe', {
                  key: active.id, class: 'dashboard', src: active.url, title: `Grafana dashboard ${active.name}`,
                  referrerpolicy: 'no-referrer', onLoad: () => { state.frameLoading = false; },
                }),
              ])
              : null,
          ]
          : empty(`No dashboards in namespace "${session.namespace}". Add the address of a Grafana dashboard to see it here.`),
      ]);
    };
  },
});
