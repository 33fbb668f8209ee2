// Who may do what in the namespace: its members and group bindings, and, for admins, every
// user of the built-in sign-in. What the caller may change is the API's decision; the page
// shows its refusals as they come.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session } from '../api.js';
import { button, changer, empty, failed, loading, paginate } from '../ui.js';

const ROLES = ['viewer', 'editor', 'owner'];

function roleSelect(value, onChange, label) {
  return h('select', { value, 'aria-label': label, onChange: (e) => onChange(e.target.value) },
    ROLES.map((r) => h('option', { value: r }, r)));
}

export const People = defineComponent({
  setup() {
    const state = reactive({
      me: null, members: null, bindings: null, users: null, error: '', notice: '',
      pages: { members: { page: 1 }, bindings: { page: 1 }, users: { page: 1 } },
      add: { user_sub: '', role: 'viewer' }, bind: { group: '', role: 'viewer' },
      create: { email: '', name: '', password: '', is_admin: false },
    });
    const act = changer(state, () => load());
    async function load() {
      try {
        const [me, members, bindings] = await Promise.all([
          api.get('/api/v1/whoami'), api.get('/api/v1/members'), api.get('/api/v1/group-bindings'),
        ]);
        state.me = me;
        state.members = members.members || [];
        state.bindings = bindings.bindings || [];
        state.users = me.is_admin ? (await api.get('/api/v1/users')).users || [] : null;
      } catch (err) {
        state.error = err.message;
        state.members ??= [];
        state.bindings ??= [];
      }
    }
    watch(() => session.namespace, load, { immediate: true });

    function membersSection() {
      const candidates = (state.users || []).filter((u) => !state.members.some((m) => m.user_sub === u.sub));
      const { shown, nav } = paginate(state.members, state.pages.members);
      return [
        h('h2', 'Members'),
        state.members.length
          ? h('table', { class: 'list', 'aria-label': 'members' }, [
            h('thead', h('tr', ['User', 'Role', ''].map((t) => h('th', t)))),
            h('tbody', shown.map((m) => h('tr', { key: m.user_sub }, [
              h('td', m.email || m.username || m.user_sub),
              h('td', m.user_sub === state.me?.sub
                ? m.role
                : roleSelect(m.role, (role) => act(`Made ${m.email || m.user_sub} ${role}.`, () => api.post('/api/v1/members', { user_sub: m.user_sub, role })), `Role of ${m.email || m.user_sub}`)),
              h('td', { class: 'actions' }, m.user_sub === state.me?.sub ? null : button('Remove', () => {
                if (window.confirm(`Remove ${m.email || m.user_sub} from namespace "${session.namespace}"?`)) {
                  act(`Removed ${m.email || m.user_sub}.`, () => api.del(`/api/v1/members/${encodeURIComponent(m.user_sub)}`));
                }
              }, { class: 'small danger', 'aria-label': `Remove ${m.email || m.user_sub}` })),
            ]))),
          ])
          : empty('No members yet.'),
        nav,
        state.users
          ? h('form', { class: 'inline', 'aria-label': 'add a member', onSubmit: (e) => {
            e.preventDefault();
            act('Member added.', () => api.post('/api/v1/members', { ...state.add }));
          } }, [
            h('select', { 'aria-label': 'User to add', value: state.add.user_sub, required: true, onChange: (e) => { state.add.user_sub = e.target.value; } }, [
              h('option', { value: '' }, candidates.length ? 'Choose a user' : 'every user is a member'),
              ...candidates.map((u) => h('option', { value: u.sub }, u.email || u.username || u.sub)),
            ]),
            roleSelect(state.add.role, (r) => { state.add.role = r; }, 'Role of the new member'),
            h('button', { type: 'submit', class: 'small' }, 'Add member'),
          ])
          : null,
      ];
    }

    function bindingsSection() {
      const { shown, nav } = paginate(state.bindings, state.pages.bindings);
      return [
        h('h2', 'Group bindings'),
        h('p', { class: 'hint' }, 'Members of an OpenID Connect group get its role here.'),
        state.bindings.length
          ? h('table', { class: 'list', 'aria-label': 'group bindings' }, [
            h('thead', h('tr', ['Group', 'Role', ''].map((t) => h('th', t)))),
            h('tbody', shown.map((b) => h('tr', { key: b.group }, [
              h('td', b.group),
              h('td', roleSelect(b.role, (role) => act(`Group ${b.group} now gets ${role}.`, () => api.post('/api/v1/group-bindings', { group: b.group, role })), `Role of group ${b.group}`)),
              h('td', { class: 'actions' }, button('Remove', () => {
                if (window.confirm(`Remove the binding of group ${b.group}?`)) act(`Removed group ${b.group}.`, () => api.del(`/api/v1/group-bindings/${encodeURIComponent(b.group)}`));
              }, { class: 'small danger', 'aria-label': `Remove group ${b.group}` })),
            ]))),
          ])
          : empty('No group is bound to this namespace.'),
        nav,
        h('form', { class: 'inline', 'aria-label': 'bind a group', onSubmit: (e) => {
          e.preventDefault();
          act(`Group ${state.bind.group} bound.`, () => api.post('/api/v1/group-bindings', { ...state.bind }));
        } }, [
          h('input', { 'aria-label': 'Group', placeholder: 'group', value: state.bind.group, required: true, onInput: (e) => { state.bind.group = e.target.value; } }),
          roleSelect(state.bind.role, (r) => { state.bind.role = r; }, 'Role of the group'),
          h('button', { type: 'submit', class: 'small' }, 'Bind group'),
        ]),
      ];
    }

    function usersSection() {
      if (!state.users) return [];
      const self = (u) => u.sub === state.me?.sub;
      const { shown, nav } = paginate(state.users, state.pages.users);
      return [
        h('h2', 'All users (admins only)'),
        h('table', { class: 'list', 'aria-label': 'users' }, [
          h('thead', h('tr', ['E-mail', 'Name', 'Admin', 'Must change password', 'Last seen', ''].map((t) => h('th', t)))),
          h('tbody', shown.map((u) => h('tr', { key: u.sub }, [
            h('td', u.email || u.username),
            h('td', u.name),
            h('td', h('input', {
              type: 'checkbox', checked: u.is_admin, disabled: self(u), 'aria-label': `${u.email} is an admin`,
              onChange: (e) => act(`${u.email} is ${e.target.checked ? 'now' : 'no longer'} an admin.`, () => api.put(`/api/v1/users/${encodeURIComponent(u.sub)}/admin`, { is_admin: e.target.checked })),
            })),
            h('td', h('input', {
              type: 'checkbox', checked: u.must_change_password, 'aria-label': `${u.email} must change the password`,
              onChange: (e) => act(`Updated ${u.email}.`, () => api.put(`/api/v1/users/${encodeURIComponent(u.sub)}/force-password-change`, { force_password_change: e.target.checked })),
            })),
            h('td', u.last_seen ? new Date(u.last_seen).toLocaleString() : 'never'),
            h('td', { class: 'actions' }, [
              button('Reset password', () => {
                const pw = window.prompt(`New password for ${u.email} (at least 6 characters; they must change it at sign-in):`);
                if (pw) act(`Password of ${u.email} reset.`, () => api.put(`/api/v1/users/${encodeURIComponent(u.sub)}/reset-password`, { new_password: pw }));
              }, { class: 'small', 'aria-label': `Reset the password of ${u.email}` }),
              self(u) ? null : button('Delete', () => {
                if (window.confirm(`Delete user ${u.email}?`)) act(`Deleted ${u.email}.`, () => api.del(`/api/v1/users/${encodeURIComponent(u.sub)}`));
              }, { class: 'small danger', 'aria-label': `Delete ${u.email}` }),
            ]),
          ]))),
        ]),
        nav,
        h('form', { class: 'card', 'aria-label': 'create a user', onSubmit: (e) => {
          e.preventDefault();
          act(`Created ${state.create.email}.`, async () => {
            await api.post('/api/v1/users', { ...state.create });
            state.create = { email: '', name: '', password: '', is_admin: false };
          });
        } }, [
          h('h2', 'New user'),
          ...[['email', 'E-mail', 'email'], ['name', 'Name', 'text'], ['password', 'Initial password', 'password']].map(([key, label, type]) => h('div', { class: 'field' }, [
            h('label', { for: `new-user-${key}` }, label),
            h('input', { id: `new-user-${key}`, type, value: state.create[key], required: key !== 'name', autocomplete: 'off', onInput: (e) => { state.create[key] = e.target.value; } }),
          ])),
          h('label', { class: 'check' }, [
            h('input', { type: 'checkbox', checked: state.create.is_admin, onChange: (e) => { state.create.is_admin = e.target.checked; } }),
            ' Admin of every namespace',
          ]),
          h('button', { type: 'submit', class: 'primary' }, 'Create user'),
        ]),
      ];
    }

    return () => {
      const header = h('div', { class: 'toolbar' }, [h('h1', 'Members and users')]);
      if (state.members === null) return h('section', [header, loading('the members')]);
      const me = state.me;
      return h('section', [
        header,
        me ? h('p', { 'data-testid': 'my-role' }, `Your role here: ${me.role || 'none'}${me.is_admin ? ' (admin of every namespace)' : me.role_source === 'group' ? ' (through a group)' : ''}.`) : null,
        state.error ? failed(state.error, load) : null,
        state.notice ? h('p', { class: 'notice', role: 'status' }, state.notice) : null,
        ...membersSection(),
        ...bindingsSection(),
        ...usersSection(),
      ]);
    };
  },
});
