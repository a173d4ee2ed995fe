// The Flows view (the flow files under the served folder) and a flow's page: its
// problems, the form that starts a run, and the editor of an editable flow file.
import {api, enc, flowUrl} from '../api.js';
import {el, isObject, renderProblems, showError} from '../dom.js';
import {drawDag, fitInto} from '../draw.js';
import {flowEditor} from '../editor/editor.js';

export function viewFlows(view) {
  const ul = el('ul', {id: 'flows', class: 'flow-list'});
  const none = el('p', {class: 'muted', hidden: true}, 'No flow files were found under the served folder.');
  view.root.append(el('div', {class: 'toolbar'}, el('h1', null, 'Flows'), newFlow()), ul, none);
  api('GET', '/api/flows').then((data) => {
    if (!view.alive) return;
    for (const f of data.flows) {
      const problems = f.problems || [];
      ul.append(el('li', null, el('a', {class: 'flow', 'data-path': f.path, href: '#/flows/' + enc(f.path)},
        el('span', {class: 'name'}, f.name || f.path),
        el('span', {class: 'path mono'}, f.path),
        el('span', {class: 'kind'}, f.kind),
        f.editable ? null : el('span', {class: 'muted'}, 'read-only'),
        problems.length ? el('span', {class: 'problems', title: problems.join('\n')},
          `${problems.length} problem${problems.length === 1 ? '' : 's'}`) : null)));
    }
    none.hidden = data.flows.length > 0;
  }).catch((err) => { if (view.alive) showError(err); });
}

/** button#new-flow: a name, then POST /api/flows creates the file and the editor opens it. */
function newFlow() {
  const name = el('input', {id: 'new-flow-name', type: 'text', placeholder: 'folder/name.toml', 'aria-label': 'New flow file'});
  const create = el('button', {id: 'new-flow-ok', type: 'button'}, 'Create');
  const box = el('span', {class: 'new-flow', hidden: true}, name, create);
  const open = el('button', {id: 'new-flow', type: 'button'}, 'New flow');
  open.addEventListener('click', () => { box.hidden = false; open.hidden = true; name.focus(); });
  async function submit() {
    let path = name.value.trim();
    if (!path) return showError('Give the new flow file a name.');
    if (!/\.(toml|json)$/i.test(path)) path += '.toml';
    create.disabled = true;
    try {
      const res = await api('POST', '/api/flows', {path, doc: null});
      location.hash = '#/flows/' + enc(res.path || path);
    } catch (err) {
      showError(err);
    } finally {
      create.disabled = false;
    }
  }
  create.addEventListener('click', submit);
  name.addEventListener('keydown', (e) => { if (e.key === 'Enter') submit(); });
  return el('span', null, open, box);
}

export function viewFlow(view, path) {
  view.root.append(el('p', {class: 'muted'}, 'Loading\u2026'));
  api('GET', flowUrl(path)).then((data) => {
    if (!view.alive) return;
    view.root.textContent = '';
    renderFlow(view, path, data);
  }).catch((err) => { if (view.alive) showError(err); });
}

function renderFlow(view, path, data) {
  const name = data.name || (data.doc && isObject(data.doc.flow) && data.doc.flow.name) || path;
  const formBox = el('div');
  const runButton = el('button', {id: 'run-flow', type: 'button'}, 'Run this flow\u2026');
  runButton.addEventListener('click', () => {
    const form = formBox.querySelector('form');
    if (form) form.hidden = !form.hidden;
    else formBox.append(runForm(path, data.inputs || []));
  });
  const problemsUl = el('ul', {id: 'problems'});
  const none = el('p', {class: 'muted ok'}, 'No problems found.');
  view.root.append(
    el('div', {class: 'title-row'},
      el('h1', null, name, ' ', el('span', {class: 'muted mono small'}, `${data.path} (${data.kind})`)),
      el('div', {class: 'actions'}, runButton)),
    formBox,
    el('h2', null, 'Problems'), problemsUl, none);
  if (!data.editable || !data.doc) {
    renderProblems(problemsUl, none, data.problems || [], null);
    view.root.append(el('p', {class: 'note'}, data.kind === 'py'
      ? 'Python flows are read-only here: edit the .py file itself. Their graph:'
      : 'This flow file cannot be edited here (read-only). Its graph:'));
    if (data.graph && data.graph.mode === 'full') {
      const box = el('div', {class: 'dag-scroll'});
      view.root.append(box);
      fitInto(box, drawDag(data.graph).svg, data.graph.nodes.length);
    }
    return;
  }
  flowEditor(view, path, data, problemsUl, none);
}

/**
 * form#run-form: one field per flow input, built from its JSON Schema (inp.schema: a select for
 * an enum, a checkbox for a boolean, a number field for numbers, text otherwise, with its
 * description); submitting starts a run and opens it.
 */
function runForm(path, inputs) {
  const fields = new Map(); // name -> [input, its initial text]
  const submit = el('button', {type: 'submit'}, 'Start run');
  const form = el('form', {id: 'run-form', class: 'card'});
  for (const inp of inputs) {
    const schema = inp.schema || {};
    const text = inp.required ? '' : (typeof inp.default === 'string' ? inp.default : JSON.stringify(inp.default) ?? '');
    let input;
    if (Array.isArray(schema.enum)) {
      input = el('select', {name: inp.name},
        inp.required ? el('option', {value: ''}, '(choose)') : null,
        ...schema.enum.map((v) => el('option', {value: JSON.stringify(v)}, typeof v === 'string' ? v : JSON.stringify(v))));
      input.value = inp.required ? '' : JSON.stringify(inp.default);
    } else if (schema.type === 'boolean') {
      input = el('input', {type: 'checkbox', name: inp.name});
      input.checked = inp.default === true;
    } else {
      const numeric = schema.type === 'integer' || schema.type === 'number';
      input = el('input', {type: numeric ? 'number' : 'text', name: inp.name, value: text,
        step: schema.type === 'integer' ? '1' : numeric ? 'any' : null, placeholder: inp.required ? 'required' : null});
    }
    fields.set(inp.name, [input, input.type === 'checkbox' ? String(input.checked) : input.value]);
    form.append(el('label', {class: 'field'}, el('span', {class: 'label'}, inp.name),
      input, inp.type ? el('span', {class: 'muted small'}, ' ' + inp.type) : null,
      schema.description ? el('span', {class: 'hint'}, schema.description) : null));
  }
  if (!inputs.length) form.append(el('p', {class: 'muted'}, 'This flow takes no inputs.'));
  form.append(el('p', {class: 'hint'}, 'A value is read as JSON when it parses (42, true, [1, 2], "text"), '
    + 'as text otherwise; an empty field keeps the default.'), submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = {};
    for (const inp of inputs) {
      const [input, initial] = fields.get(inp.name);
      const schema = inp.schema || {};
      const text = input.type === 'checkbox' ? String(input.checked) : input.value;
      if (text === '') continue;
      if (!inp.required && text === initial) values[inp.name] = inp.default; // untouched: the default, typed
      else if (input.tagName === 'SELECT') values[inp.name] = JSON.parse(text);
      else if (input.type === 'checkbox') values[inp.name] = input.checked;
      else if (schema.type === 'string') values[inp.name] = text; // a string input: the text as typed
      else {
        try {
          values[inp.name] = JSON.parse(text);
        } catch {
          values[inp.name] = text; // not JSON: the text itself
        }
      }
    }
    submit.disabled = true;
    try {
      const res = await api('POST', '/api/runs', {flow: path, inputs: values});
      location.hash = '#/runs/' + enc(res.id);
    } catch (err) {
      showError(err);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
