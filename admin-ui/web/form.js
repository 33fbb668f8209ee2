// A form for a JSON document, drawn from a schema (schema.js): strings, numbers, flags, lists of
// objects that can be added and removed, optional sections that can be switched on and off.
// Every field carries its path (`routes[0].uri`), by which the API's validation errors are
// shown under it. An empty number field removes the key, so the gateway's default applies.
import { h } from 'vue';

const id = (path) => `f-${path.replace(/[^a-zA-Z0-9]+/g, '-')}`;

function options(enumeration) {
  return enumeration.map((e) => (Array.isArray(e) ? { value: e[0], label: e[1] } : { value: e, label: e }));
}

function wrap(path, schema, errors, input, inline = false) {
  const error = errors[path];
  return h('div', { class: ['field', inline && 'inline-field', error && 'invalid'] }, [
    h('label', { for: id(path) }, schema.label),
    input,
    schema.hint && !error ? h('small', { class: 'hint' }, schema.hint) : null,
    error ? h('small', { class: 'error', role: 'alert', id: `${id(path)}-error` }, error) : null,
  ]);
}

function scalar(parent, key, schema, path, errors) {
  const value = parent[key];
  const common = { id: id(path), 'aria-invalid': errors[path] ? 'true' : undefined, 'aria-describedby': errors[path] ? `${id(path)}-error` : undefined };
  const set = (v) => { if (v === undefined) delete parent[key]; else parent[key] = v; };
  switch (schema.type) {
    case 'bool':
      return h('div', { class: 'field check-field' }, h('label', { class: 'check' }, [
        h('input', { ...common, type: 'checkbox', checked: !!value, onChange: (e) => set(e.target.checked) }), ` ${schema.label}`,
      ]));
    case 'number':
      if (schema.enum) {
        return wrap(path, schema, errors, h('select', { ...common, value: value ?? '', onChange: (e) => set(e.target.value === '' ? undefined : Number(e.target.value)) },
          [h('option', { value: '' }, '(default)'), ...options(schema.enum).map((o) => h('option', { value: o.value }, o.label))]), true);
      }
      return wrap(path, schema, errors, h('input', {
        ...common, type: 'number', step: schema.float ? 'any' : '1', value: value ?? '',
        onInput: (e) => set(e.target.value === '' ? undefined : Number(e.target.value)),
      }), true);
    case 'string':
      if (schema.enum) {
        return wrap(path, schema, errors, h('select', { ...common, value: value ?? '', onChange: (e) => set(e.target.value === '' ? undefined : e.target.value) },
          [h('option', { value: '' }, '(default)'), ...options(schema.enum).map((o) => h('option', { value: o.value }, o.label))]), true);
      }
      return wrap(path, schema, errors, h('input', { ...common, value: value ?? '', onInput: (e) => set(schema.optional && e.target.value === '' ? undefined : e.target.value) }), true);
    case 'lines':
      return wrap(path, schema, errors, h('textarea', {
        ...common, rows: 3, value: (value || []).join('\n'),
        onInput: (e) => set(e.target.value.split('\n').map((s) => s.trim()).filter(Boolean)),
      }));
    case 'numbers':
      return wrap(path, schema, errors, h('input', {
        ...common, value: (value || []).join(', '),
        onChange: (e) => {
          const parts = e.target.value.split(',').map((s) => s.trim()).filter(Boolean);
          set(parts.length ? parts.map(Number) : undefined);
        },
      }), true);
    case 'map':
    case 'mapList':
      return wrap(path, schema, errors, h('textarea', {
        ...common, rows: 2,
        value: Object.entries(value || {}).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : v}`).join('\n'),
        onChange: (e) => {
          const out = {};
          for (const line of e.target.value.split('\n')) {
            const at = line.indexOf('=');
            if (at <= 0) continue;
            const k = line.slice(0, at).trim();
            const v = line.slice(at + 1).trim();
            out[k] = schema.type === 'mapList' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v;
          }
          set(Object.keys(out).length ? out : undefined);
        },
      }));
    case 'json':
      return wrap(path, schema, errors, h('textarea', {
        ...common, rows: 2, class: 'json', value: value === undefined ? '' : JSON.stringify(value),
        onChange: (e) => {
          const text = e.target.value.trim();
          if (!text) { set(undefined); return; }
          try { set(JSON.parse(text)); e.target.setCustomValidity(''); } catch (err) { e.target.setCustomValidity(err.message); e.target.reportValidity(); }
        },
      }));
    default:
      return null;
  }
}

function fields(target, schema, path, errors) {
  return Object.entries(schema.fields).map(([key, child]) => node(target, key, child, path ? `${path}.${key}` : key, errors));
}

function node(parent, key, schema, path, errors) {
  if (schema.type === 'object') {
    const present = parent[key] !== undefined && parent[key] !== null;
    const toggle = schema.optional
      ? h('label', { class: 'check' }, [
        h('input', {
          type: 'checkbox', checked: present, 'aria-label': `${schema.label}: on`,
          onChange: (e) => { if (e.target.checked) parent[key] = prepare(schema.fresh ? schema.fresh() : {}, schema); else delete parent[key]; },
        }),
        ` ${schema.label}`,
      ])
      : h('legend', schema.label);
    return h('fieldset', { class: ['group', errors[path] && 'invalid'] }, [
      schema.optional ? h('legend', toggle) : toggle,
      errors[path] ? h('small', { class: 'error', role: 'alert' }, errors[path]) : null,
      present || !schema.optional ? h('div', { class: 'grid' }, fields(parent[key], schema, path, errors)) : null,
    ]);
  }
  if (schema.type === 'list') {
    const items = Array.isArray(parent[key]) ? parent[key] : [];
    return h('fieldset', { class: ['group', errors[path] && 'invalid'] }, [
      h('legend', `${schema.label} (${items.length})`),
      errors[path] ? h('small', { class: 'error', role: 'alert' }, errors[path]) : null,
      ...items.map((item, i) => h('div', { class: 'list-item', key: i }, [
        h('div', { class: 'list-item-head' }, [
          h('strong', `${schema.item.label} ${i + 1}${item.name ? `: ${item.name}` : ''}`),
          h('button', { type: 'button', class: 'small danger', 'aria-label': `Remove ${schema.item.label.toLowerCase()} ${i + 1} of ${schema.label.toLowerCase()}`, onClick: () => items.splice(i, 1) }, 'Remove'),
        ]),
        h('div', { class: 'grid' }, fields(item, schema.item, `${path}[${i}]`, errors)),
      ])),
      h('button', { type: 'button', class: 'small', onClick: () => items.push(prepare(schema.newItem(), schema.item)) }, `Add ${schema.item.label.toLowerCase()} to ${schema.label.toLowerCase()}`),
    ]);
  }
  return scalar(parent, key, schema, path, errors);
}

// Gives `doc` the sections and lists the form edits in place (a required section or a list the
// document lacks), before it is drawn: drawing changes nothing.
export function prepare(doc, schema) {
  for (const [key, child] of Object.entries(schema.fields)) {
    if (child.type === 'object') {
      if ((doc[key] === undefined || doc[key] === null) && !child.optional) doc[key] = {};
      if (doc[key]) prepare(doc[key], child);
    } else if (child.type === 'list') {
      if (!Array.isArray(doc[key])) doc[key] = [];
      for (const item of doc[key]) prepare(item, child.item);
    }
  }
  return doc;
}

// The form of `doc` (changed in place) for `schema`; `errors` by path.
export function documentForm(doc, schema, errors) {
  return h('div', { class: 'doc-form' }, fields(doc, schema, '', errors));
}
