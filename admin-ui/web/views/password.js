// Changing one's password: required after the first sign-in of the initial admin (and after an
// admin's reset). A change ends every session of the user, so the console signs in again with
// the new password.
import { defineComponent, h, reactive } from 'vue';
import { call, session, signIn, signOut } from '../api.js';
import { navigate } from '../router.js';
import { field, textInput } from '../ui.js';

export const Password = defineComponent({
  setup() {
    const form = reactive({ old: '', next: '', again: '' });
    const state = reactive({ busy: false, error: '', errors: {} });
    async function submit(e) {
      e.preventDefault();
      state.errors = {};
      state.error = '';
      if (form.next !== form.again) {
        state.errors.again = 'The two new passwords differ.';
        return;
      }
      state.busy = true;
      try {
        await call('POST', '/api/auth/change-password', { old_password: form.old, new_password: form.next }, { expires: false });
        const email = session.user?.email;
        if (!email) {
          signOut();
          navigate('/login', { replace: true });
          return;
        }
        const r = await call('POST', '/api/auth/login', { email, password: form.next }, { expires: false });
        signIn(r.access_token, r.must_change_password);
        navigate('/domains', { replace: true });
      } catch (err) {
        if (err.status === 401) state.errors.old = err.message;
        else if (/password/i.test(err.message)) state.errors.next = err.message;
        else state.error = err.message;
      } finally {
        state.busy = false;
      }
    }
    return () => h('form', { class: 'card narrow', onSubmit: submit, 'aria-labelledby': 'password-title' }, [
      h('h1', { id: 'password-title' }, 'Change your password'),
      session.mustChangePassword ? h('p', { class: 'notice' }, 'Choose a password of your own before you go on.') : null,
      field({ label: 'Current password', id: 'pw-old', error: state.errors.old, input: textInput(form, 'old', { type: 'password', autocomplete: 'current-password', required: true }) }),
      field({ label: 'New password', id: 'pw-new', error: state.errors.next, hint: 'At least 6 characters.', input: textInput(form, 'next', { type: 'password', autocomplete: 'new-password', required: true }) }),
      field({ label: 'New password again', id: 'pw-again', error: state.errors.again, input: textInput(form, 'again', { type: 'password', autocomplete: 'new-password', required: true }) }),
      state.error ? h('p', { class: 'error', role: 'alert' }, state.error) : null,
      h('button', { type: 'submit', class: 'primary', disabled: state.busy }, state.busy ? 'Saving…' : 'Change password'),
    ]);
  },
});
