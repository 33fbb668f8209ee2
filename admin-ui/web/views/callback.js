// Where the identity provider sends the browser back (`/auth/callback?code=…&state=…`): the
// node exchanges the code (checking the state against the cookie its sign-in set), and the
// console keeps the tokens.
import { defineComponent, h, onMounted, reactive } from 'vue';
import { call, signIn } from '../api.js';
import { link, navigate } from '../router.js';

export const Callback = defineComponent({
  setup() {
    const state = reactive({ error: '' });
    onMounted(async () => {
      const query = new URLSearchParams(location.search);
      if (query.get('error')) {
        state.error = `The identity provider refused the sign-in: ${query.get('error_description') || query.get('error')}`;
        return;
      }
      try {
        const r = await call('GET', `/api/auth/token?code=${encodeURIComponent(query.get('code') || '')}&state=${encodeURIComponent(query.get('state') || '')}`, undefined, { expires: false });
        signIn(r.access_token, false, r.refresh_token);
        navigate('/domains', { replace: true });
      } catch (err) {
        state.error = err.message;
      }
    });
    return () => h('div', { class: 'card narrow', role: state.error ? 'alert' : 'status' }, state.error
      ? [h('h1', 'Sign-in failed'), h('p', { class: 'error' }, state.error), link('/login', 'Back to sign-in', { class: 'button' })]
      : [h('h1', 'Signing in…')]);
  },
});
