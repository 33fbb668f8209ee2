// Small pieces every view uses: labelled fields, buttons, and the loading, error and empty
// states of a list.
import { h, onBeforeUnmount } from 'vue';

let ids = 0;
export const uid = (prefix) => `${prefix}-${++ids}`;

// A labelled input; `error` shows under it and is tied to it for screen readers.
export function field({ label, id, error, hint, input }) {
  const errorId = `${id}-error`;
  return h('div', { class: ['field', error && 'invalid'] }, [
    h('label', { for: id }, label),
    input({ id, 'aria-invalid': error ? 'true' : undefined, 'aria-describedby': error ? errorId : undefined }),
    hint && !error ? h('small', { class: 'hint' }, hint) : null,
    error ? h('small', { class: 'error', id: errorId, role: 'alert' }, error) : null,
  ]);
}

export function textInput(model, key, attrs = {}) {
  return (extra) => h('input', {
    ...attrs,
    ...extra,
    value: model[key],
    onInput: (e) => { model[key] = e.target.value; },
  });
}

export function button(label, onClick, attrs = {}) {
  return h('button', { type: 'button', ...attrs, onClick }, label);
}

export function loading(what) {
  return h('p', { class: 'state', role: 'status' }, `Loading ${what}…`);
}

export function failed(error, retry) {
  return h('div', { class: 'state error-state', role: 'alert' }, [
    h('p', error),
    retry ? button('Try again', retry) : null,
  ]);
}

export function empty(text, action) {
  return h('div', { class: 'state' }, [h('p', text), action]);
}

// Page through `items`, `size` at a time; `state.page` counts from 1.
export function paginate(items, state, size = 20) {
  const pages = Math.max(1, Math.ceil(items.length / size));
  if (state.page > pages) state.page = pages;
  const shown = items.slice((state.page - 1) * size, state.page * size);
  const nav = pages > 1
    ? h('nav', { class: 'pager', 'aria-label': 'pages' }, [
      button('Previous', () => { state.page -= 1; }, { disabled: state.page <= 1 }),
      h('span', `Page ${state.page} of ${pages}`),
      button('Next', () => { state.page += 1; }, { disabled: state.page >= pages }),
    ])
    : null;
  return { shown, nav };
}

// A message for the next view (a save that moves to the saved resource's own page).
let flash = '';
export function setFlash(text) { flash = text; }
export function takeFlash() { const text = flash; flash = ''; return text; }

// Runs `load` now and then `ms` after each run ends, until the calling component unmounts;
// the returned function runs it again at once (only the latest run schedules the next, so an
// early run never leaves two loops going).
export function poll(ms, load) {
  let timer = null;
  let stopped = false;
  let latest = 0;
  async function run() {
    clearTimeout(timer);
    const mine = ++latest;
    await load();
    if (!stopped && mine === latest) timer = setTimeout(run, ms);
  }
  onBeforeUnmount(() => { stopped = true; clearTimeout(timer); });
  run();
  return run;
}

// A page's changes through the API: `change(what, fn)` runs `fn`, then says `what` in
// `state.notice` and runs `reload`; a refusal goes to `state[errorKey]`, in the API's words.
export function changer(state, reload, errorKey = 'error') {
  return async (what, fn) => {
    state[errorKey] = '';
    state.notice = '';
    try {
      await fn();
      state.notice = what;
      await reload();
    } catch (err) {
      state[errorKey] = err.message;
    }
  };
}
