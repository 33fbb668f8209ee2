// The console: the shell (navigation, namespace, who is signed in) around the view the route
// names, and the sign-in dialog over it when a session ends.
import { createApp, defineComponent, h, reactive, watch } from 'vue';
import { api, session, setNamespace, signOut } from './api.js';
import { link, match, navigate, route } from './router.js';
import { Login } from './views/login.js';
import { Callback } from './views/callback.js';
import { Password } from './views/password.js';
import { ResourceList } from './views/resources.js';
import { Editor } from './views/editor.js';
import { History } from './views/history.js';
import { Cluster } from './views/cluster.js';
import { Credentials } from './views/credentials.js';
import { Status } from './views/status.js';
import { Audit } from './views/audit.js';
import { Traffic } from './views/traffic.js';
import { People } from './views/people.js';
import { Monitoring } from './views/monitoring.js';
import { button } from './ui.js';

function view() {
  const path = route.value;
  for (const kind of ['domains', 'clusters']) {
    if (path === `/${kind}`) return h(ResourceList, { kind, key: kind });
    if (path === `/${kind}/new`) return h(Editor, { kind, key: `${kind}-new` });
    const m = match(`/${kind}/:name`, path);
    if (m) return h(Editor, { kind, name: m.name, key: `${kind}-${m.name}` });
    const hist = match(`/${kind}/:name/history`, path);
    if (hist) return h(History, { kind, name: hist.name, key: `${kind}-${hist.name}-history` });
  }
  if (path === '/password') return h(Password);
  if (path === '/cluster') return h(Cluster);
  if (path === '/credentials') return h(Credentials);
  if (path === '/status') return h(Status);
  if (path === '/audit') return h(Audit);
  if (path === '/traffic') return h(Traffic);
  if (path === '/members') return h(People);
  if (path === '/monitoring') return h(Monitoring);
  return h('section', [h('h1', 'Not found'), h('p', `Nothing lives at ${path}.`), link('/domains', 'Go to the domains')]);
}

// Another namespace has other resources: a page of one resource goes back to its list.
function switchNamespace(name) {
  setNamespace(name);
  const kind = route.value.split('/')[1];
  if (kind === 'domains' || kind === 'clusters') navigate(`/${kind}`);
}

const Namespaces = defineComponent({
  setup() {
    const state = reactive({ names: [session.namespace], error: '', creating: false, name: '' });
    async function load() {
      try {
        const r = await api.get('/api/v1/namespaces');
        state.names = r.namespaces && r.namespaces.length ? r.namespaces : ['default'];
        state.error = '';
      } catch (err) {
        state.error = err.message;
      }
    }
    async function create(e) {
      e.preventDefault();
      try {
        const r = await api.post('/api/v1/namespaces', { name: state.name.trim() });
        state.creating = false;
        state.name = '';
        await load();
        switchNamespace(r.name);
      } catch (err) {
        state.error = err.message;
      }
    }
    watch(() => session.token, (t) => { if (t) load(); }, { immediate: true });
    return () => h('div', { class: 'namespaces' }, [
      h('label', { for: 'namespace' }, 'Namespace'),
      h('select', {
        id: 'namespace', value: session.namespace,
        onChange: (e) => switchNamespace(e.target.value),
      }, [...new Set([...state.names, session.namespace])].map((n) => h('option', { value: n }, n))),
      state.creating
        ? h('form', { class: 'inline', onSubmit: create }, [
          h('input', { 'aria-label': 'New namespace name', placeholder: 'name', value: state.name, required: true, onInput: (e) => { state.name = e.target.value; } }),
          h('button', { type: 'submit', class: 'small' }, 'Create'),
          button('Cancel', () => { state.creating = false; }, { class: 'small' }),
        ])
        : button('New', () => { state.creating = true; }, { class: 'small', 'aria-label': 'New namespace' }),
      state.error ? h('small', { class: 'error', role: 'alert' }, state.error) : null,
    ]);
  },
});

const App = defineComponent({
  setup() {
    return () => {
      if (!session.token) {
        if (route.value === '/auth/callback') return h('main', { class: 'center' }, h(Callback));
        if (route.value !== '/login') navigate('/login', { replace: true });
        return h('main', { class: 'center' }, h(Login));
      }
      if (route.value === '/login') navigate('/domains', { replace: true });
      if (session.mustChangePassword && route.value !== '/password') navigate('/password', { replace: true });
      const nav = [['/domains', 'Domains'], ['/clusters', 'Clusters'], ['/traffic', 'Traffic'], ['/monitoring', 'Monitoring'], ['/status', 'Status'], ['/audit', 'Audit'],
        ['/credentials', 'Credentials'], ['/members', 'Members'], ['/cluster', 'Cluster']];
      return [
        h('header', { class: 'top' }, [
          h('a', { class: 'brand', href: '/ui/' }, 'Hermes'),
          h('nav', { 'aria-label': 'main' }, nav.map(([path, label]) => link(path, label, {
            'aria-current': route.value === path || route.value.startsWith(`${path}/`) ? 'page' : undefined,
          }))),
          h(Namespaces),
          h('div', { class: 'who' }, [
            h('span', session.user?.name || ''),
            link('/password', 'Password', { class: 'button small' }),
            button('Sign out', () => { signOut(); navigate('/login'); }, { class: 'small' }),
          ]),
        ]),
        h('main', { class: 'page' }, view()),
        session.expired
          ? h('div', { class: 'overlay', role: 'dialog', 'aria-modal': 'true' }, h(Login, { dialog: true }))
          : null,
      ];
    };
  },
});

createApp(App).mount('#app');
