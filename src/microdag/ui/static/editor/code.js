// The code panel of the flow editor: the selected step's Python code in a code editor
// (an inline step's `python` from the flow document; a `call` step's function read from
// and saved to its module file), its problems marked at their lines, and "Run this step"
// / "Run up to here" on the current document with the step's output, log and traceback
// shown under the editor. A module function's code is checked as it is typed (the server's
// .../code/check, the rules inline code is checked by, against the editor's document) and is
// not saved while it has problems. The editor (editor.js) owns the state `ed`; `on` are its
// actions: changed(key) after the document changed, moduleChanged(), problemsChanged(), say(text).
import {api, enc, itemQuery, runUrl, stepUrl} from '../api.js';
import {badge, el, isObject, missing, showError} from '../dom.js';
import {shownDuration, stepStatus} from '../present.js';

const POLL_MS = 40, POLL_SLOW_MS = 300, POLL_FAST_FOR_MS = 5000; // a step's run: read often at first, then less
const CHECK_DELAY_MS = 300;  // a module function's code is checked once the typing stops this long

let cmPromise = null;
/** The vendored CodeMirror, loaded the first time a step's code is shown (not with the page). */
function loadCodeMirror() {
  if (!cmPromise) {
    cmPromise = import('../vendor/codemirror.js').catch((err) => {
      cmPromise = null;
      throw err;
    });
  }
  return cmPromise;
}

const KEYWORDS = new Set(['False', 'None', 'True', 'and', 'as', 'assert', 'async', 'await', 'break', 'class',
  'continue', 'def', 'del', 'elif', 'else', 'except', 'finally', 'for', 'from', 'global', 'if', 'import', 'in',
  'is', 'lambda', 'nonlocal', 'not', 'or', 'pass', 'raise', 'return', 'try', 'while', 'with', 'yield']);

/** A function name for a step's starter code: the step's name when Python takes it (the rule of
 * microdag/_inline.py's _def_name, which names it in its problems). */
export function functionName(step) {
  let name = step.replace(/[^A-Za-z0-9_]/g, '_');
  if (!/^[A-Za-z_]/.test(name)) name = 'step_' + name;
  return KEYWORDS.has(name) ? name + '_' : name;
}

export const starter = (step) => `def ${functionName(step)}():\n    return None\n`;

export function createCodePanel(ed, path, view, on) {
  const box = el('section', {id: 'code-panel', class: 'code-panel', hidden: true});
  let shown = null;   // {name, kind, editor, data} of the step shown
  let token = 0;      // drops answers meant for a step no longer shown
  let runToken = 0;   // drops the results of a run since replaced
  const checks = new Map(); // step -> {timer, seq, pending: Promise|null}: its module code's checks
  view.onLeave(() => {
    token++; runToken++;
    for (const c of checks.values()) clearTimeout(c.timer);
    if (shown && shown.editor) shown.editor.destroy();
  });

  const current = (t) => view.alive && t === token;
  const problemsOf = (name) => [
    ...ed.problems.filter((p) => p.step === name && p.field === 'python' && !missing(p.line)),
    ...(ed.moduleProblems.get(name) || []),
  ];

  /** Shows step `name`'s code (null: hides the panel). */
  function show(name) {
    const t = ++token;
    if (shown && shown.editor) shown.editor.destroy();
    shown = null;
    box.textContent = '';
    const step = name === null ? null : ed.doc.steps[name];
    box.hidden = !isObject(step);
    if (!isObject(step)) return;
    shown = {name, kind: null, editor: null, data: null};
    const where = el('p', {class: 'code-where muted small'});
    const host = el('div', {class: 'code-host'});
    box.append(el('h3', null, 'Code of ', el('span', {class: 'mono'}, name)), where, host, runBox(name));
    if (typeof step.python === 'string') {
      shown.kind = 'inline';
      where.textContent = `inline in ${path}`;
      mount(t, host, {doc: step.python, firstLine: 1, readOnly: false,
        onChange: (text) => { step.python = text; on.changed('python'); }});
    } else if (typeof step.call === 'string') {
      shown.kind = 'module';
      where.textContent = `${step.call}: loading\u2026`;
      api('GET', stepUrl(path, name) + '/code').then((data) => {
        if (!current(t)) return;
        shown.data = data;
        const edit = ed.moduleEdits.get(name);
        where.textContent = `${data.path}, line ${data.line}` + (data.editable ? '' : ` (read-only: ${data.why || 'not under the served folder'})`);
        where.classList.toggle('read-only', !data.editable);
        mount(t, host, {doc: edit ? edit.code : data.code, firstLine: data.line, readOnly: !data.editable,
          onChange: (text) => {
            const before = ed.moduleEdits.get(name);
            ed.moduleEdits.set(name, {code: text, digest: before ? before.digest : data.digest});
            on.moduleChanged();
            checkSoon(name);
          }});
      }).catch((err) => {
        if (current(t)) where.textContent = `${step.call}: ${err.message}`;
      });
    } else {
      shown.kind = 'other';
      const convert = el('button', {id: 'make-inline', type: 'button'}, 'Write this step in Python');
      convert.addEventListener('click', () => {
        delete step.command;
        delete step.run;
        step.python = starter(name);
        on.changed('python');
        on.kindChanged();
      });
      host.append(el('p', {class: 'muted'}, 'This step runs a command. ', convert));
    }
  }

  /** The code editor in `host`, once CodeMirror is loaded (and the step still shown). */
  function mount(t, host, options) {
    loadCodeMirror().then((cm) => {
      if (!current(t)) return;
      host.textContent = '';
      shown.editor = cm.createPythonEditor(host, {...options, label: `Python code of ${shown.name}`,
        onRun: () => run(shown.name, false), onSave: on.save});
      host.setAttribute('data-ready', '');
      markProblems();
    }).catch((err) => { if (current(t)) { host.textContent = ''; showError(err); } });
  }

  // ---- a module function's problems as it is typed
  const checkOf = (name) => {
    if (!checks.has(name)) checks.set(name, {timer: 0, seq: 0, pending: null});
    return checks.get(name);
  };

  /** Checks step `name`'s edited module code once the typing stops. */
  function checkSoon(name) {
    const c = checkOf(name);
    clearTimeout(c.timer);
    c.timer = setTimeout(() => { c.timer = 0; checkModule(name); }, CHECK_DELAY_MS);
  }

  /** Checks step `name`'s edited module code now; its problems go to ed.moduleProblems. */
  function checkModule(name) {
    const c = checkOf(name), edit = ed.moduleEdits.get(name);
    clearTimeout(c.timer);
    c.timer = 0;
    if (!edit) return Promise.resolve();
    const seq = ++c.seq;
    c.pending = api('POST', stepUrl(path, name) + '/code/check', {code: edit.code, doc: ed.doc}).then((res) => {
      if (!view.alive || seq !== c.seq) return; // overtaken by a newer check
      setModuleProblems(name, res.problems || []);
    }).catch((err) => { if (view.alive) showError(err); });
    return c.pending;
  }

  function setModuleProblems(name, problems) {
    if (problems.length) ed.moduleProblems.set(name, problems.map((p) => ({...p, step: name, field: 'python'})));
    else ed.moduleProblems.delete(name);
    on.problemsChanged();
  }

  /** Checks every module function edited (at once, not waiting for the typing to stop): for a save. */
  async function checkModules() {
    await Promise.all(Array.from(ed.moduleEdits.keys()).map((name) => {
      const c = checkOf(name);
      return c.timer ? checkModule(name) : c.pending;
    }));
    return Array.from(ed.moduleProblems.values()).flat();
  }

  /** The flow changed (steps, inputs): the module code edited is checked again against it. */
  function recheckModules() {
    for (const name of ed.moduleEdits.keys()) checkSoon(name);
  }

  /** Marks the shown step's code problems at their lines. */
  function markProblems() {
    if (!shown || !shown.editor) return;
    shown.editor.setProblems(problemsOf(shown.name).map((p) => ({line: p.line, col: p.col ?? 0, message: p.message})));
  }

  function focusLine() {
    if (shown && shown.editor) shown.editor.focus();
  }

  // ---- running the step
  function runBox(name) {
    const from = el('select', {id: 'step-inputs-from', 'aria-label': 'Inputs of the step'},
      el('option', {value: 'latest'}, "the latest run's values"),
      el('option', {value: 'json'}, 'values typed as JSON'));
    const typed = el('textarea', {id: 'step-inputs', rows: 3, hidden: true, placeholder: '{"parameter": value}',
      'aria-label': 'Arguments as a JSON object'});
    from.addEventListener('change', () => { typed.hidden = from.value !== 'json'; });
    const result = el('div', {id: 'step-run-result', role: 'status'});
    const one = el('button', {id: 'run-this-step', type: 'button', class: 'primary', title: 'Ctrl-Enter in the editor'}, 'Run this step');
    const upTo = el('button', {id: 'run-up-to-here', type: 'button'}, 'Run up to here');
    one.addEventListener('click', () => run(name, false));
    upTo.addEventListener('click', () => run(name, true));
    return el('div', {class: 'code-run'},
      el('div', {class: 'toolbar'}, one, upTo, el('label', null, 'Inputs: ', from)), typed, result);
  }

  /** Saves the module code edited for step `name`; false when the file refused it. */
  async function saveModule(name) {
    if (!ed.moduleEdits.has(name)) return true;
    await checkModules();
    const found = ed.moduleProblems.get(name);
    if (found && found.length) {
      on.say(`The code of ${name} was not saved: ${found[0].message}`);
      return false;
    }
    const edit = ed.moduleEdits.get(name);
    if (!edit) return true; // saved meanwhile
    try {
      const data = await api('PUT', stepUrl(path, name) + '/code', {code: edit.code, digest: edit.digest, doc: ed.doc});
      if (ed.moduleEdits.get(name) === edit) ed.moduleEdits.delete(name);
      else ed.moduleEdits.get(name).digest = data.digest; // edited again while it was saved
      ed.moduleProblems.delete(name);
      if (shown && shown.name === name) shown.data = data;
      return true;
    } catch (err) {
      if (err.status === 422 && err.data) setModuleProblems(name, err.data.problems || []);
      on.say(`The code of ${name} was not saved: ${err.message}`);
      return false;
    } finally {
      on.moduleChanged();
    }
  }

  /** Runs step `name` (with its ancestors when `upstream`) on the current document. */
  async function run(name, upstream) {
    const rt = ++runToken;
    const result = box.querySelector('#step-run-result');
    const buttons = box.querySelectorAll('.code-run button');
    const from = box.querySelector('#step-inputs-from');
    let inputs = null;
    if (from && from.value === 'json') {
      try {
        inputs = JSON.parse(box.querySelector('#step-inputs').value || '{}');
      } catch (err) {
        return on.say(`The inputs are not JSON: ${err.message}`);
      }
      if (!isObject(inputs)) return on.say('The inputs must be a JSON object: {"parameter": value}.');
    }
    const started = performance.now();
    result.textContent = '';
    result.append(el('p', {class: 'muted'}, `Running ${name}${upstream ? ' and the steps before it' : ''}\u2026`));
    for (const b of buttons) b.disabled = true;
    try {
      if (!(await saveModule(name))) { result.textContent = ''; return; }
      const res = await api('POST', stepUrl(path, name) + '/run', {doc: ed.doc, inputs, from_run: null, upstream});
      if (rt !== runToken || !view.alive) return;
      await follow(res.run_id, name, result, rt, started);
    } catch (err) {
      if (rt === runToken && view.alive) {
        result.textContent = '';
        result.append(el('p', {class: 'error-msg'}, err.message));
      }
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }

  /** Polls run `id` until it ends, showing the step's status, then its output, log and traceback. */
  async function follow(id, name, result, rt, started) {
    for (;;) {
      const data = await api('GET', runUrl(id));
      if (rt !== runToken || !view.alive) return;
      const tasks = data.tasks.filter((t) => t.step === name);
      if (!data.live && data.run.status !== 'running' && data.run.status !== 'pending') {
        return showResult(id, name, data, tasks, result, rt, started);
      }
      result.textContent = '';
      result.append(el('p', null, badge(tasks.length ? stepStatus(tasks) : 'pending'), ' ',
        el('a', {href: '#/runs/' + enc(id), class: 'mono'}, id)));
      const wait = performance.now() - started < POLL_FAST_FOR_MS ? POLL_MS : POLL_SLOW_MS;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  async function showResult(id, name, data, tasks, result, rt, started) {
    const task = tasks.find((t) => missing(t.item)) || tasks[0] || null;
    const status = tasks.length ? stepStatus(tasks) : data.run.status;
    const parts = [el('p', {class: 'run-line'}, badge(status, 'step-run-status'), ' ',
      task ? shownDuration(task) : '', ' \u00b7 run ', el('a', {href: '#/runs/' + enc(id), class: 'mono'}, id))];
    if (!task && data.run.problem) parts.push(el('pre', {class: 'error'}, data.run.problem));
    let log = null;
    if (task) {
      if (task.error) {
        parts.push(el('h4', null, 'Traceback'), el('pre', {class: 'error traceback'},
          task.error.traceback || [task.error.type, task.error.message].filter(Boolean).join(': ')));
      }
      parts.push(el('h4', null, 'Output'), missing(task.output) ? el('p', {class: 'muted'}, 'No output recorded.')
        : el('pre', {class: 'output'}, task.output + (task.output_truncated ? '\n\u2026' : '')));
      if (task.has_log) {
        log = el('pre', {class: 'log'}, 'loading\u2026');
        parts.push(el('h4', null, 'Printed'), log);
      }
    }
    result.textContent = '';
    result.append(...parts);
    result.setAttribute('data-ms', String(Math.round(performance.now() - started)));
    if (log) {
      try {
        const res = await api('GET', `${runUrl(id)}/logs/${enc(name)}${itemQuery(task.item)}`);
        if (rt === runToken && view.alive) log.textContent = res.text || '(empty)';
      } catch (err) {
        if (rt === runToken && view.alive) log.textContent = err.message;
      }
    }
  }

  /** Saves every module function edited; false when one was refused. */
  async function saveModules() {
    let ok = true;
    for (const name of Array.from(ed.moduleEdits.keys())) ok = (await saveModule(name)) && ok;
    return ok;
  }

  /** Shows step `name`'s code unless it is shown already, as the step's kind now has it. */
  function sync(name) {
    const step = name === null ? null : ed.doc.steps[name];
    const kind = !isObject(step) ? null : typeof step.python === 'string' ? 'inline'
      : typeof step.call === 'string' ? 'module' : 'other';
    const call = kind === 'module' ? step.call : null;
    if (shown && shown.name === name && shown.kind === kind && shown.call === call) return;
    show(name);
    if (shown) shown.call = call;
  }

  return {box, sync, markProblems, focusLine, saveModules, checkModules, recheckModules};
}
