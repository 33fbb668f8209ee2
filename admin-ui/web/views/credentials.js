// HMAC credentials of the namespace: list, enable or disable, delete, and create with scopes
// grouped by their prefix. A new credential's secret is shown once, with copy buttons and the
// controller configuration that uses it; the API never returns it again.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session } from '../api.js';
import { button, empty, failed, loading, paginate } from '../ui.js';

function scopesText(scopes, all) {
  if (!scopes || !scopes.length) return 'None';
  if (all.length && all.every((s) => scopes.includes(s))) return 'All';
  return scopes.join(', ');
}

function copyButton(label, text, state) {
  return button(label, async () => {
    try {
      await navigator.clipboard.writeText(text);
      state.copied = `${label.replace(/^Copy (.)/, (_, c) => c.toUpperCase())} copied.`;
    } catch {
      state.copied = 'Copying was refused by the browser: select the text instead.';
    }
  }, { class: 'small' });
}

export const Credentials = defineComponent({
  setup() {
    const state = reactive({
      items: null, error: '', page: 1, all: [], creating: false, busy: false,
      form: { description: '', scopes: [], all_namespaces: false }, formError: '', created: null, copied: '',
    });
    async function load() {
      state.error = '';
      state.items = null;
      try {
        const [list, scopes] = await Promise.all([api.get('/api/v1/credentials'), api.get('/api/v1/scopes')]);
        state.items = list.credentials || [];
        state.all = scopes.scopes || [];
      } catch (err) {
        state.error = err.message;
      }
    }
    async function create(e) {
      e.preventDefault();
      state.busy = true;
      state.formError = '';
      try {
        state.created = await api.post('/api/v1/credentials', { ...state.form });
        state.creating = false;
        state.form = { description: '', scopes: [], all_namespaces: false };
        await load();
      } catch (err) {
        state.formError = err.message;
      } finally {
        state.busy = false;
      }
    }
    async function toggle(c) {
      try {
        await api.put(`/api/v1/credentials/${c.id}`, { description: c.description, scopes: c.scopes, enabled: !c.enabled });
        await load();
      } catch (err) {
        state.error = err.message;
      }
    }
    async function remove(c) {
      if (!window.confirm(`Delete credential ${c.access_key}? Programs using it are refused from then on.`)) return;
      try {
        await api.del(`/api/v1/credentials/${c.id}`);
        await load();
      } catch (err) {
        state.error = err.message;
      }
    }
    watch(() => session.namespace, () => { state.created = null; load(); }, { immediate: true });

    function scopeGroups() {
      const groups = {};
      for (const s of state.all) (groups[s.split(':')[0]] ||= []).push(s);
      return Object.entries(groups).map(([group, scopes]) => h('fieldset', { class: 'scopes' }, [
        h('legend', group),
        ...scopes.map((s) => h('label', { class: 'check' }, [
          h('input', {
            type: 'checkbox', checked: state.form.scopes.includes(s),
            onChange: (e) => {
              state.form.scopes = e.target.checked ? [...state.form.scopes, s] : state.form.scopes.filter((x) => x !== s);
            },
          }),
          ` ${s}`,
        ])),
      ]));
    }

    function createdPanel() {
      const c = state.created;
      const snippet = [
        'controlplane:',
        `  url: ${location.origin}`,
        `  namespace: ${c.namespace}`,
        'auth:',
        `  access_key: ${c.access_key}`,
        `  secret_key: ${c.secret_key}`,
      ].join('\n');
      return h('div', { class: 'card secret', role: 'region', 'aria-label': 'new credential' }, [
        h('h2', 'Credential created: copy its secret now'),
        h('p', 'This is the only time the secret key is shown. Store it where the program that signs requests can read it.'),
        h('dl', { class: 'facts' }, [
          h('dt', 'Access key'), h('dd', [h('code', { 'data-testid': 'access-key' }, c.access_key), ' ', copyButton('Copy access key', c.access_key, state)]),
          h('dt', 'Secret key'), h('dd', [h('code', { 'data-testid': 'secret-key' }, c.secret_key), ' ', copyButton('Copy secret key', c.secret_key, state)]),
        ]),
        h('p', 'For the original Hermes controller (config.yaml):'),
        h('pre', { class: 'snippet', 'aria-label': 'controller configuration' }, snippet),
        copyButton('Copy configuration', snippet, state),
        state.copied ? h('p', { class: 'notice', role: 'status' }, state.copied) : null,
        button('I have stored the secret', () => { state.created = null; state.copied = ''; }, { class: 'primary' }),
      ]);
    }

    return () => {
      const header = h('div', { class: 'toolbar' }, [
        h('h1', 'Credentials'),
        state.creating ? null : button('New credential', () => { state.creating = true; state.created = null; }, { class: 'primary' }),
      ]);
      const form = state.creating
        ? h('form', { class: 'card', onSubmit: create, 'aria-label': 'new credential form' }, [
          h('div', { class: 'field' }, [
            h('label', { for: 'cred-description' }, 'Description'),
            h('input', { id: 'cred-description', value: state.form.description, onInput: (e) => { state.form.description = e.target.value; } }),
          ]),
          h('div', { class: 'toolbar' }, [
            h('span', 'Scopes'),
            button('Select all', () => { state.form.scopes = [...state.all]; }, { class: 'small' }),
            button('Clear', () => { state.form.scopes = []; }, { class: 'small' }),
          ]),
          h('div', { class: 'scope-groups' }, scopeGroups()),
          h('label', { class: 'check' }, [
            h('input', { type: 'checkbox', checked: state.form.all_namespaces, onChange: (e) => { state.form.all_namespaces = e.target.checked; } }),
            ' Valid in every namespace (admins only)',
          ]),
          state.formError ? h('p', { class: 'error', role: 'alert' }, state.formError) : null,
          h('div', { class: 'actions' }, [
            h('button', { type: 'submit', class: 'primary', disabled: state.busy }, state.busy ? 'Creating…' : 'Create'),
            button('Cancel', () => { state.creating = false; }),
          ]),
        ])
        : null;
      let body;
      if (state.error) body = failed(state.error, load);
      else if (state.items === null) body = loading('credentials');
      else if (!state.items.length) body = empty(`No credentials in namespace "${session.namespace}": programs cannot sign requests here yet.`);
      else {
        const { shown, nav } = paginate(state.items, state);
        body = [
          h('table', { class: 'list', 'aria-label': 'credentials' }, [
            h('thead', h('tr', ['Access key', 'Description', 'Scopes', 'State', 'Created', ''].map((t) => h('th', t)))),
            h('tbody', shown.map((c) => h('tr', { key: c.id }, [
              h('td', h('code', c.access_key)),
              h('td', c.description),
              h('td', scopesText(c.scopes, state.all) + (c.all_namespaces ? ' · every namespace' : '')),
              h('td', c.enabled ? 'Enabled' : 'Disabled'),
              h('td', c.created_at ? new Date(c.created_at).toLocaleString() : ''),
              h('td', { class: 'actions' }, [
                button(c.enabled ? 'Disable' : 'Enable', () => toggle(c), { class: 'small', 'aria-label': `${c.enabled ? 'Disable' : 'Enable'} ${c.access_key}` }),
                button('Delete', () => remove(c), { class: 'small danger', 'aria-label': `Delete ${c.access_key}` }),
              ]),
            ]))),
          ]),
          nav,
        ];
      }
      return h('section', [header, state.created ? createdPanel() : null, form, body]);
    };
  },
});
