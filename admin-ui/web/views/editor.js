// Creating and editing a domain or cluster, in a form of every field or as its JSON document.
// Validation errors from the API show next to their fields (and in a list); a conflict (someone
// saved in between) offers to reapply these edits on the latest version or to load it instead.
import { defineComponent, h, reactive, watch } from 'vue';
import { api, session } from '../api.js';
import { link, navigate } from '../router.js';
import { button, failed, loading, setFlash, takeFlash } from '../ui.js';
import { documentForm, prepare } from '../form.js';
import { CLUSTER, DOMAIN } from '../schema.js';

const TEMPLATES = {
  domains: () => ({ name: '', hosts: ['example.com'], routes: [{ name: 'default', uri: '/*', status: 1, clusters: [{ name: '', weight: 100 }] }] }),
  clusters: () => ({ name: '', type: 'roundrobin', nodes: [{ host: '127.0.0.1', port: 8080, weight: 100 }] }),
};
const SCHEMAS = { domains: DOMAIN, clusters: CLUSTER };

// The API names fields from the document list it validates (`domains[0].routes[1].uri`).
const local = (field) => field.replace(/^(domains|clusters)\[\d+\]\.?/, '');

export const Editor = defineComponent({
  props: { kind: { type: String, required: true }, name: { type: String, default: '' } },
  setup(props) {
    const state = reactive({
      mode: 'form', doc: {}, text: '', version: 0, loaded: false, error: '', errors: [], busy: false, conflict: false, saved: '',
    });
    const singular = () => props.kind.slice(0, -1);
    const schema = () => SCHEMAS[props.kind];
    function show(doc) {
      state.doc = prepare(structuredClone(doc), schema());
      state.text = JSON.stringify(state.doc, null, 2);
    }
    async function load() {
      state.loaded = false;
      state.error = '';
      state.errors = [];
      state.conflict = false;
      state.saved = takeFlash();
      if (!props.name) {
        show(TEMPLATES[props.kind]());
        state.version = 0;
        state.loaded = true;
        return;
      }
      try {
        const r = await api.get(`/api/v1/${props.kind}/${encodeURIComponent(props.name)}`);
        show(r[singular()]);
        state.version = r.resource_version;
        state.loaded = true;
      } catch (err) {
        state.error = err.message;
      }
    }
    // The document being edited, from whichever view is open; null when the JSON is not.
    function current() {
      if (state.mode === 'form') return JSON.parse(JSON.stringify(state.doc));
      try {
        return JSON.parse(state.text);
      } catch (err) {
        state.errors = [{ field: 'JSON', message: err.message }];
        return null;
      }
    }
    function switchTo(mode) {
      if (mode === state.mode) return;
      if (mode === 'json') {
        state.text = JSON.stringify(state.doc, null, 2);
      } else {
        const doc = current();
        if (doc === null) return;
        state.doc = prepare(doc, schema());
      }
      state.mode = mode;
    }
    async function save() {
      state.errors = [];
      state.error = '';
      state.saved = '';
      const doc = current();
      if (doc === null) return;
      state.busy = true;
      try {
        let r;
        if (props.name) {
          r = await api.put(`/api/v1/${props.kind}/${encodeURIComponent(props.name)}`, { ...doc, resource_version: state.version });
        } else {
          r = await api.post(`/api/v1/${props.kind}`, doc);
        }
        state.version = r.resource_version;
        state.conflict = false;
        state.saved = `Saved: version ${r.version}.`;
        if (!props.name) {
          setFlash(state.saved);
          navigate(`/${props.kind}/${encodeURIComponent(r[singular()].name)}`, { replace: true });
        }
      } catch (err) {
        if (err.status === 409 && props.name) state.conflict = true;
        else if (Object.keys(err.fields).length) state.errors = Object.entries(err.fields).map(([field, message]) => ({ field: local(field), message }));
        else state.error = err.message;
      } finally {
        state.busy = false;
      }
    }
    // Keeps the edits and takes the latest version number, so that the next save replaces what
    // the other person saved with these edits.
    async function reapply() {
      const r = await api.get(`/api/v1/${props.kind}/${encodeURIComponent(props.name)}`);
      state.version = r.resource_version;
      state.conflict = false;
      state.saved = `Your edits now apply to version ${r.resource_version}; save to replace it.`;
    }
    watch(() => [props.kind, props.name, session.namespace], load, { immediate: true });
    return () => {
      const noun = singular()[0].toUpperCase() + singular().slice(1);
      const title = props.name ? `${noun} ${props.name}` : `New ${singular()}`;
      if (state.error && !state.loaded) return h('section', [h('h1', title), failed(state.error, load)]);
      if (!state.loaded) return h('section', [h('h1', title), loading(singular())]);
      const byField = Object.fromEntries(state.errors.map((e) => [e.field, e.message]));
      const tab = (mode, label) => h('button', {
        type: 'button', role: 'tab', 'aria-selected': String(state.mode === mode), onClick: () => switchTo(mode),
      }, label);
      return h('section', [
        h('div', { class: 'toolbar' }, [
          h('h1', title),
          props.name ? link(`/${props.kind}/${encodeURIComponent(props.name)}/history`, 'History', { class: 'button' }) : null,
          link(`/${props.kind}`, `All ${props.kind}`, { class: 'button' }),
        ]),
        h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'edit as' }, [tab('form', 'Form'), tab('json', 'JSON')]),
        state.mode === 'form'
          ? h('div', { role: 'tabpanel' }, documentForm(state.doc, schema(), byField))
          : h('div', { role: 'tabpanel' }, [
            h('label', { for: 'doc-json' }, `The ${singular()} as JSON`),
            h('textarea', {
              id: 'doc-json', class: 'json', spellcheck: 'false', rows: 24, value: state.text,
              'aria-invalid': state.errors.length ? 'true' : undefined,
              'aria-describedby': state.errors.length ? 'doc-errors' : undefined,
              onInput: (e) => { state.text = e.target.value; },
            }),
          ]),
        state.errors.length
          ? h('ul', { id: 'doc-errors', class: 'errors', role: 'alert' },
            state.errors.map((e) => h('li', [h('code', e.field || singular()), ': ', e.message])))
          : null,
        state.conflict
          ? h('div', { class: 'conflict', role: 'alert' }, [
            h('p', `Someone else saved this ${singular()} after you opened it, so your save was refused (409).`),
            button('Reapply my edits on the latest version', reapply, { class: 'primary' }),
            button('Discard my edits and load the latest', load),
          ])
          : null,
        state.error ? h('p', { class: 'error', role: 'alert' }, state.error) : null,
        state.saved ? h('p', { class: 'notice', role: 'status' }, state.saved) : null,
        h('div', { class: 'actions' }, [
          button(state.busy ? 'Saving…' : 'Save', save, { class: 'primary', disabled: state.busy }),
        ]),
      ]);
    };
  },
});
