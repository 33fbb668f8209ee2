// Sign-in: a page of its own, or a dialog over the page when a session ended mid-edit (the page
// underneath, and whatever was typed into it, stays).
import { defineComponent, h, onMounted, reactive } from 'vue';
import { call, session, signIn } from '../api.js';
import { navigate } from '../router.js';
import { field, textInput } from '../ui.js';

export const Login = defineComponent({
  props: { dialog: Boolean },
  setup(props) {
    const form = reactive({ email: session.user?.email || '', password: '' });
    const state = reactive({ busy: false, error: '', mode: 'builtin' });
    onMounted(async () => {
      try {
        state.mode = (await call('GET', '/api/auth/config')).mode;
      } catch {
        // The form still works against a built-in node.
      }
    });
    async function submit(e) {
      e.preventDefault();
      state.busy = true;
      state.error = '';
      try {
        const r = await call('POST', '/api/auth/login', { email: form.email, password: form.password }, { expires: false });
        signIn(r.access_token, r.must_change_password);
        if (!props.dialog) navigate(r.must_change_password ? '/password' : '/domains', { replace: true });
      } catch (err) {
        state.error = err.message;
      } finally {
        state.busy = false;
      }
    }
    return () => {
      const title = props.dialog ? 'Your session has ended: sign in again' : 'Sign in to Hermes';
      if (state.mode === 'oidc') {
        // The provider's page replaces this one; unsaved edits under a dialog are lost, which
        // the dialog says (a refresh token renews most sessions before it comes to this).
        return h('div', { class: 'card narrow' }, [
          h('h1', { id: 'login-title' }, title),
          props.dialog ? h('p', { class: 'error' }, 'Signing in again leaves this page: what you were editing is lost.') : null,
          h('p', 'This node signs people in through your identity provider.'),
          h('button', { type: 'button', class: 'primary', onClick: () => location.assign('/api/auth/login') }, 'Sign in with SSO'),
        ]);
      }
      return h('form', { class: 'card narrow', onSubmit: submit, 'aria-labelledby': 'login-title' }, [
        h('h1', { id: 'login-title' }, title),
        props.dialog ? h('p', 'What you were editing is kept.') : null,
        field({ label: 'E-mail', id: 'login-email', input: textInput(form, 'email', { type: 'email', autocomplete: 'username', required: true }) }),
        field({ label: 'Password', id: 'login-password', input: textInput(form, 'password', { type: 'password', autocomplete: 'current-password', required: true }) }),
        state.error ? h('p', { class: 'error', role: 'alert' }, state.error) : null,
        h('button', { type: 'submit', class: 'primary', disabled: state.busy }, state.busy ? 'Signing in…' : 'Sign in'),
      ]);
    };
  },
});
