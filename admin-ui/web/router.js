// The console's routes live under /ui/ in the address bar (the node answers index.html for
// every one of them); this keeps the current one and moves between them without a reload.
import { h, shallowRef } from 'vue';

const BASE = '/ui';

function parse(pathname) {
  const path = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  return !path || path === '/' ? '/domains' : path.replace(/\/+$/, '');
}

export const route = shallowRef(parse(location.pathname));

export function navigate(path, { replace = false } = {}) {
  history[replace ? 'replaceState' : 'pushState'](null, '', BASE + path);
  route.value = parse(BASE + path);
}

window.addEventListener('popstate', () => {
  route.value = parse(location.pathname);
});

// A link that moves within the console; a modified click (new tab) is left to the browser.
export function link(path, children, attrs = {}) {
  return h('a', {
    ...attrs,
    href: BASE + path,
    onClick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      navigate(path);
    },
  }, children);
}

// Matches `pattern` ('/domains/:name/history') against the current route; the parameters or null.
export function match(pattern, path = route.value) {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}
