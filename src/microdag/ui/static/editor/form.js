// The editor's step form: one field per step option of the flow-file JSON Schema
// (a select for an enum, a checkbox, a number, lines, "parameter = step" pairs, text),
// each with its problems under it. The editor (editor.js) owns the state `ed`.
import {el, has, isObject, setup} from '../dom.js';

function fieldKind(prop) {
  if (Array.isArray(prop.enum)) return 'enum';
  const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== 'null') : prop.type;
  return {boolean: 'bool', integer: 'number', number: 'number', array: 'lines', object: 'pairs'}[type] || 'text';
}

function makeField(key, prop, value) {
  const kind = fieldKind(prop);
  const id = 'field-' + key;
  let input;
  if (kind === 'enum') {
    const options = prop.enum.map(String);
    if (value !== undefined && !options.includes(String(value))) options.push(String(value));
    input = el('select', null, el('option', {value: ''}, '(default)'), options.map((o) => el('option', {value: o}, o)));
    input.value = value === undefined ? '' : String(value);
  } else if (kind === 'bool') {
    input = el('input', {type: 'checkbox'});
    input.checked = value === true;
  } else if (kind === 'number') {
    input = el('input', {type: 'number', step: prop.type === 'integer' ? 1 : 'any', min: prop.minimum ?? null, max: prop.maximum ?? null});
    input.value = typeof value === 'number' ? String(value) : '';
  } else if (kind === 'lines' || kind === 'pairs') {
    input = el('textarea', {rows: 3});
    if (kind === 'lines' && Array.isArray(value)) input.value = value.join('\n');
    if (kind === 'pairs' && isObject(value)) input.value = Object.entries(value).map(([k, v]) => `${k} = ${v}`).join('\n');
  } else {
    input = el('input', {type: 'text'});
    input.value = typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);
  }
  setup(input, {id, name: key, 'data-kind': kind, title: prop.description || null}, []);
  const hint = {lines: 'one per line', pairs: 'one "parameter = step" per line'}[kind];
  const label = el('label', {for: id}, key, hint ? el('span', {class: 'muted'}, ` (${hint})`) : null);
  return el('div', {class: `field ${kind}`, 'data-key': key},
    kind === 'bool' ? el('label', {class: 'check'}, input, ' ', key) : [label, input],
    prop.description ? el('small', {class: 'hint'}, prop.description) : null,
    el('small', {class: 'field-problem'}));
}

/** A field's value for the doc; undefined removes the key. */
function readField(input) {
  const kind = input.getAttribute('data-kind');
  const key = input.getAttribute('name');
  const lines = () => input.value.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
  if (kind === 'bool') return input.checked ? true : undefined;
  if (kind === 'number') {
    if (input.value.trim() === '') return undefined;
    const n = Number(input.value);
    return Number.isFinite(n) ? n : input.value;
  }
  if (kind === 'lines') {
    const list = key === 'command' ? lines() : lines().map((l) => l.trim());
    return list.length ? list : undefined;
  }
  if (kind === 'pairs') {
    const pairs = lines().map((l) => (l.includes('=') ? [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] : [l, '']));
    return pairs.length ? Object.fromEntries(pairs.map(([k, v]) => [k.trim(), v.trim()])) : undefined;
  }
  return input.value === '' ? undefined : input.value;
}


/** The step options of the flow-file JSON Schema (a "#/..." $ref resolved). */
export function stepOptions(schema) {
  const steps = resolve(schema, schema && schema.properties && schema.properties.steps);
  return resolve(schema, steps && steps.additionalProperties) || {properties: {}};
}

/**
 * form#step-form for the selected step. `on.changed(key)` is called after a field changed
 * the document; `on.extra(name, step)` returns what the form shows under its title (the code panel).
 */
export function createForm(ed, on) {
  const form = el('form', {id: 'step-form', autocomplete: 'off'});

  function onField(e) {
    const input = e.target.closest('[name]');
    const name = on.selectedStep();
    if (!input || !input.hasAttribute('data-kind') || name === null || !isObject(ed.doc.steps[name])) return;
    const key = input.getAttribute('name');
    const value = readField(input);
    if (value === undefined) delete ed.doc.steps[name][key];
    else ed.doc.steps[name][key] = value;
    on.changed(key);
  }

  function render() {
    form.textContent = '';
    const name = on.selectedStep();
    if (name === null) {
      form.append(el('p', {class: 'muted'}, 'Select a step (here or on the canvas) to edit its options.'));
      return;
    }
    const step = ed.doc.steps[name];
    form.append(el('h3', null, 'Step ', el('span', {class: 'mono'}, name)));
    if (!isObject(step)) {
      form.append(el('p', {class: 'note'}, 'This step is not a table of options: fix it in the file.'));
      return;
    }
    const extra = on.extra ? on.extra(name, step) : null;
    if (extra) form.append(extra);
    if (!ed.stepSchema) {
      form.append(el('p', {class: 'muted'}, 'Loading the options\u2026'));
      return;
    }
    const props = ed.stepSchema.properties || {};
    const shown = Object.entries(props).filter(([key]) => !(on.hidden && on.hidden.has(key)));
    for (const [key, prop] of shown) form.append(makeField(key, prop, step[key]));
    const others = Object.keys(step).filter((k) => !has(props, k) && !(on.hidden && on.hidden.has(k)));
    if (others.length) form.append(el('p', {class: 'note'}, `Options not in the schema, kept as they are: ${others.join(', ')}`));
  }

  /** Shows byKey's messages (key -> [message]) under their fields. */
  function markProblems(byKey) {
    for (const field of form.querySelectorAll('.field')) {
      const messages = byKey.get(field.getAttribute('data-key'));
      field.querySelector('[name]').classList.toggle('problem', !!messages);
      field.classList.toggle('has-problem', !!messages);
      field.querySelector('.field-problem').textContent = messages ? messages.join('; ') : '';
    }
  }

  form.addEventListener('input', onField);
  form.addEventListener('change', onField);
  form.addEventListener('submit', (e) => e.preventDefault());
  return {form, render, markProblems};
}

/** Resolves a local "#/..." $ref of the schema. */
function resolve(schema, node) {
  if (!node || typeof node.$ref !== 'string' || !node.$ref.startsWith('#/')) return node;
  return node.$ref.slice(2).split('/').reduce((at, part) => (at ? at[part.replace(/~1/g, '/').replace(/~0/g, '~')] : at), schema);
}
