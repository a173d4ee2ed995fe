// The editor of an editable flow file. `ed.doc` (the parsed file) is the source of truth:
// every edit changes it, then it is sent whole to .../check (debounced) and on save.
// The canvas (canvas.js) and the step form (form.js) read and change `ed`; this module
// holds the toolbar, the list of steps, the edits, the check and the save.
import {api, flowUrl, loadSchema} from '../api.js';
import {el, has, isObject, missing, renderProblems, showError} from '../dom.js';
import {createCanvas} from './canvas.js';
import {createCodePanel} from './code.js';
import {createForm, stepOptions} from './form.js';

const CHECK_DELAY_MS = 300;  // wait after the last change before checking

export function flowEditor(view, path, data, problemsUl, none) {
  const graph = data.graph && data.graph.mode === 'full' ? data.graph : null;
  const ed = {
    doc: data.doc,
    w: graph ? graph.node_w : 160,
    h: graph ? graph.node_h : 28,
    pos: new Map(),        // step -> {x, y}: server layout, then where the user dragged it
    pinned: new Set(),     // steps the user moved: the server's layout no longer places them
    implied: new Map(),    // step -> its dependencies as the server sees them (all kinds)
    problems: data.problems || [],
    sel: null,             // {step} or {from, to}
    connectFrom: null,     // click-to-connect: the step whose port-out was clicked
    nodeEls: new Map(),    // step -> g.node
    edgeEls: new Map(),    // "from\0to" -> g.edge-g (the visible curve and path.edge)
    dragged: false,        // the last pointer gesture moved: the click that follows is not a click
    seq: 0, timer: 0,      // checks sent; pending debounce
    version: 0,            // edits made (to tell whether a save covered them all)
    stepSchema: null,
    routes: new Map(),     // "from\0to" -> the server's route of that edge
    savedVersion: 0,       // ed.version when the file was last saved (or read)
    moduleEdits: new Map(), // step -> {code, digest}: a module function edited, not saved yet
    moduleProblems: new Map(), // step -> problems of its module code, from a refused save
  };
  if (!isObject(ed.doc.steps)) ed.doc.steps = {};
  for (const s of data.steps || []) ed.implied.set(s.name, s.depends || []);

  const say = (text) => { note.textContent = text; };
  const selectedStep = () => (ed.sel && !missing(ed.sel.step) ? ed.sel.step : null);
  const names = () => Object.keys(ed.doc.steps);
  const canvas = createCanvas(ed, {select, connect, say, cancelConnect, markSelection});
  const stepForm = createForm(ed, {selectedStep, changed: onField, hidden: new Set(['python'])});
  const code = createCodePanel(ed, path, view, {changed: onField, moduleChanged, say, save, problemsChanged: markProblems,
    kindChanged: () => { renderList(); renderForm(); }});

  // ---- DOM
  const newName = el('input', {id: 'new-step-name', type: 'text', placeholder: 'step name', 'aria-label': 'New step name'});
  const addBox = el('span', {class: 'add-box', hidden: true}, newName,
    el('button', {id: 'add-step-ok', type: 'button', onclick: () => addStep(newName.value)}, 'Add'),
    el('button', {type: 'button', onclick: () => { addBox.hidden = true; }}, 'Cancel'));
  const removeStepBtn = el('button', {id: 'remove-step', type: 'button', disabled: true, onclick: removeStep}, 'Remove step');
  const removeEdgeBtn = el('button', {id: 'remove-edge', type: 'button', disabled: true, onclick: removeEdge}, 'Remove edge');
  const saveBtn = el('button', {id: 'save', type: 'button', class: 'primary', onclick: save}, 'Save');
  const saveStatus = el('span', {id: 'save-status', role: 'status'});
  const note = el('p', {id: 'editor-note', class: 'note', role: 'status'});
  const stepsUl = el('ul', {id: 'steps', class: 'step-list'});
  view.root.append(el('h2', null, 'Editor'),
    el('div', {class: 'toolbar'},
      el('button', {id: 'add-step', type: 'button', onclick: () => { addBox.hidden = false; newName.focus(); }}, 'Add step'),
      addBox, removeStepBtn, removeEdgeBtn, saveBtn, saveStatus),
    note,
    el('div', {class: 'editor'},
      el('div', {class: 'main-col'}, canvas.box, code.box),
      el('div', {class: 'side'}, el('h3', null, 'Steps'), stepsUl, stepForm.form)));
  const dirty = () => ed.version !== ed.savedVersion || ed.moduleEdits.size > 0;
  const unloading = (e) => { if (dirty()) { e.preventDefault(); e.returnValue = ''; } };
  window.addEventListener('beforeunload', unloading);
  view.guard(() => (dirty() ? 'This flow has unsaved changes: leave without saving them?' : null));
  view.onLeave(() => { clearTimeout(ed.timer); clearTimeout(ed.codeTimer); window.removeEventListener('beforeunload', unloading); });
  newName.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') addStep(newName.value);
    if (e.key === 'Escape') addBox.hidden = true;
  });

  /** ul#steps, rebuilt only when the names or kinds changed. */
  function renderList() {
    const kinds = names().map((name) => {
      const s = ed.doc.steps[name];
      return [name, isObject(s) ? (has(s, 'python') ? 'python' : has(s, 'call') ? 'call' : has(s, 'command') ? 'command' : '') : ''];
    });
    const signature = JSON.stringify(kinds);
    if (stepsUl.dataset.signature === signature) return;
    stepsUl.dataset.signature = signature;
    stepsUl.textContent = '';
    for (const [name, kind] of kinds) {
      stepsUl.append(el('li', {'data-step': name, tabindex: 0}, el('span', {class: 'name'}, name),
        kind ? el('span', {class: 'kind'}, kind) : null));
    }
  }

  /** Redraws everything but the form (which keeps the focus while typing). */
  function redraw() {
    canvas.syncPositions(null);
    canvas.drawNodes();
    canvas.drawEdges();
    canvas.sizeCanvas();
    renderList();
    markSelection();
    markProblems();
  }

  function renderForm() {
    stepForm.render();
    code.sync(selectedStep());
    markProblems();
  }

  function markSelection() {
    const step = selectedStep();
    canvas.markSelection(step);
    for (const li of stepsUl.children) li.classList.toggle('selected', li.getAttribute('data-step') === step);
    removeStepBtn.disabled = step === null;
    removeEdgeBtn.disabled = !(ed.sel && ed.sel.from !== undefined);
  }

  /** The flow's problems, then those of module functions being edited (the flow's check sees them saved). */
  const allProblems = () => [...ed.problems, ...Array.from(ed.moduleProblems.values()).flat()];

  function markProblems() {
    const problems = allProblems();
    const bad = new Set(problems.map((p) => p.step).filter((s) => !missing(s)));
    canvas.markProblems(bad);
    for (const li of stepsUl.children) li.classList.toggle('problem', bad.has(li.getAttribute('data-step')));
    const step = selectedStep();
    const byKey = new Map();
    for (const p of ed.problems) {
      if (step !== null && p.step === step && p.key) byKey.set(p.key, [...(byKey.get(p.key) || []), p.message]);
    }
    stepForm.markProblems(byKey);
    code.markProblems();
    renderProblems(problemsUl, none, problems, (s, p) => {
      if (!has(ed.doc.steps, s)) return;
      select({step: s});
      if (p.field === 'python') code.focusLine(p.line);
    });
  }

  /** Drops a pending click-to-connect, and its prompt. */
  function cancelConnect() {
    if (ed.connectFrom === null) return;
    ed.connectFrom = null;
    say('');
    markSelection();
  }

  function select(sel) {
    const before = selectedStep();
    cancelConnect();
    ed.sel = sel;
    markSelection();
    if (selectedStep() !== before) {
      renderForm();
      if (selectedStep() !== null) canvas.reveal(selectedStep());
    }
    markProblems();
  }

  // ---- edits
  function changed() {
    ed.version++;
    saveStatus.textContent = 'unsaved changes';
    clearTimeout(ed.timer);
    ed.timer = setTimeout(check, CHECK_DELAY_MS);
  }

  /** Module code edited (saved with the flow, or before the step runs). */
  function moduleChanged() {
    saveStatus.textContent = dirty() ? 'unsaved changes' : saveStatus.textContent;
  }

  /** A field of the step form (or the code panel: key "python") changed the document. */
  function onField(key) {
    if (key === 'depends_on' || key === 'inputs') canvas.drawEdges();
    if (key === 'call' || key === 'command' || key === 'python') renderList();
    if (key === 'call' || key === 'command') { // the code shown follows, once the typing stops
      clearTimeout(ed.codeTimer);
      ed.codeTimer = setTimeout(() => { if (view.alive) code.sync(selectedStep()); }, CHECK_DELAY_MS);
    }
    markSelection();
    markProblems();
    changed();
  }

  function connect(from, to) {
    if (from === to) return say('A step cannot depend on itself.');
    const step = ed.doc.steps[to];
    if (!isObject(step)) return say(`${to} is not a table of options: fix it in the file.`);
    if (canvas.depsOf(to).includes(from)) return say(`${to} already runs after ${from}.`);
    step.depends_on = [...(Array.isArray(step.depends_on) ? step.depends_on : []), from];
    say(`${to} now runs after ${from}.`);
    ed.sel = {step: to}; // show the target's form, with its new depends_on
    canvas.drawEdges();
    renderForm();
    changed();
  }

  function removeEdge() {
    if (!ed.sel || ed.sel.from === undefined) return;
    const {from, to} = ed.sel;
    const step = ed.doc.steps[to];
    if (isObject(step) && Array.isArray(step.depends_on) && step.depends_on.includes(from)) {
      step.depends_on = step.depends_on.filter((d) => d !== from);
      if (!step.depends_on.length) delete step.depends_on;
      ed.implied.set(to, (ed.implied.get(to) || []).filter((d) => d !== from)); // until the check says otherwise
      say(`Removed ${from} from the depends_on of ${to}.`);
      select(null);
      canvas.drawEdges();
      changed();
    } else if (isObject(step) && isObject(step.inputs) && Object.values(step.inputs).includes(from)) {
      say(`This edge comes from the inputs of ${to} (a parameter bound to ${from}): it cannot be removed here; edit that step's inputs.`);
    } else {
      say(`This edge is implied by a parameter named ${from} or a {steps.${from}} placeholder in ${to}: it cannot be removed here.`);
    }
  }

  function addStep(raw) {
    const name = raw.trim();
    if (!name) return say('Give the new step a name.');
    if (has(ed.doc.steps, name)) return say(`There is already a step named ${name}.`);
    // defineProperty: a step may be named like an Object.prototype key ("__proto__")
    Object.defineProperty(ed.doc.steps, name, {value: {command: ['echo', name]}, enumerable: true, writable: true, configurable: true});
    canvas.place(name, {x: 10, y: 10});
    newName.value = '';
    addBox.hidden = true;
    say(`Added ${name}: it runs "echo ${name}" until you change it.`);
    redraw();
    select({step: name});
    changed();
  }

  function removeStep() {
    const name = selectedStep();
    if (name === null) return;
    delete ed.doc.steps[name];
    ed.implied.delete(name);
    for (const [other, step] of Object.entries(ed.doc.steps)) {
      if (isObject(step) && Array.isArray(step.depends_on) && step.depends_on.includes(name)) {
        step.depends_on = step.depends_on.filter((d) => d !== name);
        if (!step.depends_on.length) delete step.depends_on;
      }
      ed.implied.set(other, (ed.implied.get(other) || []).filter((d) => d !== name));
    }
    say(`Removed ${name}.`);
    ed.sel = null;
    renderForm();
    redraw();
    changed();
  }

  // ---- check and save
  function applyResult(res) {
    ed.implied = new Map((res.steps || []).map((s) => [s.name, s.depends || []]));
    ed.problems = res.problems || [];
    canvas.setRoutes(res.graph);
    canvas.syncPositions(res.graph);
    redraw();
    code.recheckModules(); // a parameter of module code may bind now, or no longer
  }

  async function check() {
    ed.timer = 0;
    const seq = ++ed.seq;
    try {
      const res = await api('POST', flowUrl(path) + '/check', {doc: ed.doc});
      if (view.alive && seq === ed.seq) applyResult(res); // drop answers overtaken by a newer one
    } catch (err) {
      if (view.alive) showError(err);
    }
  }

  /** Refuses the save, saying why, with `problems` listed. */
  function refuse(why, problems) {
    saveStatus.textContent = '';
    saveStatus.append(`not saved: ${why}`, el('ul', null, problems.map((p) => el('li', null,
      p.field === 'python' && !missing(p.line) ? `${p.step}, line ${p.line}: ${p.message}` : p.message))));
  }

  async function save() {
    const codeProblems = ed.problems.filter((p) => p.field === 'python');
    if (!ed.timer && codeProblems.length) return refuse('the code of a step has problems', codeProblems);
    const moduleProblems = await code.checkModules();
    if (!view.alive) return;
    if (moduleProblems.length) return refuse('the code of a module step has problems', moduleProblems);
    clearTimeout(ed.timer);
    ed.timer = 0;
    const seq = ++ed.seq, version = ed.version;
    saveBtn.disabled = true;
    saveStatus.textContent = 'saving\u2026';
    try {
      if (!(await code.saveModules())) {
        refuse('the code of a module step was refused', Array.from(ed.moduleProblems.values()).flat());
        return;
      }
      const res = await api('PUT', flowUrl(path), {doc: ed.doc});
      if (!view.alive) return;
      if (seq === ed.seq) applyResult(res);
      ed.savedVersion = version;
      saveStatus.textContent = dirty() ? 'unsaved changes' : 'saved';
    } catch (err) {
      if (!view.alive) return;
      if (err.status === 422 && err.data) {
        ed.problems = err.data.problems || [];
        markProblems();
        refuse(err.message.replace(/^not saved: /, ''), ed.problems);
      } else {
        saveStatus.textContent = 'not saved';
        showError(err);
      }
    } finally {
      saveBtn.disabled = false;
    }
  }

  stepsUl.addEventListener('click', (e) => {
    const li = e.target.closest('li[data-step]');
    if (li) select({step: li.getAttribute('data-step')});
  });
  stepsUl.addEventListener('keydown', (e) => {
    const li = e.target.closest('li[data-step]');
    if (li && e.key === 'Enter') select({step: li.getAttribute('data-step')});
  });

  for (const n of graph ? graph.nodes : []) ed.pos.set(n.name, {x: n.x, y: n.y});
  canvas.setRoutes(graph);
  redraw();
  renderForm();
  loadSchema().then((schema) => {
    if (!view.alive) return;
    ed.stepSchema = stepOptions(schema);
    renderForm();
  }).catch((err) => { if (view.alive) showError(err); });
}
