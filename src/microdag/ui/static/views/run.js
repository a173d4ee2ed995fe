// The Run view: a run's header and actions, its graph, tasks and timeline, kept live by
// the run's events; a click on a step opens its panel (views/panel.js).
import {api, enc, runUrl} from '../api.js';
import {badge, cut, el, missing, parseJson, showError} from '../dom.js';
import {drawDag, drawLayers, drawTimeline, fitInto, LAYERS_MAX, paintNode, TIMELINE_MAX} from '../draw.js';
import {durationText, fmtTime, shownDuration, stepStatus, taskKey} from '../present.js';
import {renderPanel} from './panel.js';

const TABLE_MAX = 2000;      // rows of the tasks table

export function viewRun(view, id) {
  const st = {
    data: null,          // the last GET answer; run and live merged from events
    tasks: new Map(),    // taskKey -> task
    seen: new Map(),     // step -> the order it was first seen (rows of steps the graph lacks)
    rank: null,          // step -> its place in the graph's nodes
    byStep: new Map(),   // step -> Map(taskKey -> task)
    nodes: new Map(),    // step -> g.node (full mode), recoloured in place by events
    rows: new Map(),     // taskKey -> tr.task
    panel: null,         // {step, item} shown in #step-panel
    panelToken: 0,       // drops answers meant for a panel since replaced
    es: null, ended: false, busy: false, timelineTimer: 0, layersTimer: 0,
  };
  const header = el('section', {class: 'run-header'});
  const dagNote = el('p', {class: 'muted'});
  const dagBox = el('div', {class: 'dag-scroll'});
  const tbody = el('tbody');
  const tableNote = el('p', {class: 'muted', hidden: true});
  const timelineNote = el('p', {class: 'muted', hidden: true});
  const timelineBox = el('div', {class: 'timeline-scroll'});
  const panel = el('aside', {id: 'step-panel', hidden: true});
  view.root.append(el('div', {class: 'run-layout'},
    el('div', {class: 'run-main'}, header,
      el('h2', null, 'Graph'), dagNote, dagBox,
      el('h2', null, 'Tasks'),
      el('table', {id: 'tasks', class: 'grid clickable'},
        el('thead', null, el('tr', null,
          ['Step', 'Item', 'Status', 'Attempts', 'Duration', 'Error'].map((h) => el('th', null, h)))),
        tbody),
      tableNote,
      el('h2', null, 'Timeline'), timelineNote, timelineBox),
    panel));
  view.onLeave(() => {
    if (st.es) st.es.close();
    clearTimeout(st.timelineTimer);
    clearTimeout(st.layersTimer);
  });

  const activate = (e) => {
    const g = e.target.closest('g.node');
    if (g) openStep(g.getAttribute('data-step'));
  };
  dagBox.addEventListener('click', activate);
  dagBox.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); activate(e); } });
  tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr.task');
    if (tr) openStep(tr.getAttribute('data-step'), itemOf(tr));
  });

  function itemOf(node) {
    const raw = node.getAttribute('data-item');
    return raw === null || raw === '' ? null : Number(raw);
  }

  function putTask(t) {
    const key = taskKey(t.step, t.item);
    st.tasks.set(key, t);
    if (!st.byStep.has(t.step)) st.byStep.set(t.step, new Map());
    st.byStep.get(t.step).set(key, t);
  }

  async function load() {
    try {
      const data = await api('GET', runUrl(id));
      if (!view.alive) return;
      st.data = data;
      st.tasks.clear();
      st.byStep.clear();
      for (const t of data.tasks) putTask(t);
      renderHeader();
      renderGraph();
      renderTable();
      renderTimeline();
      if (st.panel) openStep(st.panel.step, st.panel.item);
      if (data.live && !st.es && !st.ended) listen();
    } catch (err) {
      if (view.alive) showError(err);
    }
  }

  // ---- live updates
  function listen() {
    const es = new EventSource(runUrl(id) + '/events');
    st.es = es;
    es.addEventListener('update', (e) => applyUpdate(parseJson(e.data)));
    const stop = () => {
      es.close();
      st.es = null;
      st.ended = true;
      load(); // once, for the final flags (resumable...) and the attempts
    };
    es.addEventListener('end', (e) => {
      applyUpdate(parseJson(e.data));
      stop();
    });
    // the browser retries a dropped stream by itself; CLOSED means it gave up (an HTTP error)
    es.addEventListener('error', () => { if (es.readyState === EventSource.CLOSED && st.es === es) stop(); });
  }

  function applyUpdate(msg) {
    if (!msg || !view.alive || !st.data) return;
    if (msg.run) st.data.run = {...st.data.run, ...msg.run};
    if (typeof msg.live === 'boolean') st.data.live = msg.live;
    if (msg.graph && !st.data.graph) { // a run that began after the page opened: its graph comes now
      st.data.graph = msg.graph;
      st.rank = null;
      renderGraph();
    }
    const touched = new Set();
    for (const t of msg.tasks || []) {
      const key = taskKey(t.step, t.item);
      const old = st.tasks.get(key);
      putTask(t);
      updateRow(t, key);
      touched.add(t.step);
      if (st.panel && st.panel.step === t.step && taskKey(st.panel.step, st.panel.item) === key
          && (!old || old.status !== t.status)) openStep(t.step, t.item);
    }
    for (const step of touched) {
      const g = st.nodes.get(step);
      if (g) paintNode(g, stepStatus(st.byStep.get(step).values()));
    }
    renderHeader();
    if (!st.timelineTimer) st.timelineTimer = setTimeout(renderTimeline, 1000);
    // layers mode: counts per layer come from the server only, so refetch now and then
    if (touched.size && st.data.graph && st.data.graph.mode === 'layers' && !st.layersTimer) {
      st.layersTimer = setTimeout(refreshLayers, 3000);
    }
  }

  async function refreshLayers() {
    st.layersTimer = 0;
    try {
      const data = await api('GET', runUrl(id));
      if (!view.alive) return;
      st.data.graph = data.graph;
      renderGraph();
    } catch (err) {
      if (view.alive) showError(err);
    }
  }

  // ---- header
  function renderHeader() {
    const {run, live, cancellable, resumable, flow_path: flowPath, resume_why: resumeWhy} = st.data;
    const running = run.status === 'running' && missing(run.finished);
    const duration = running && run.started ? `${durationText(Date.now() / 1000 - run.started)} so far`
      : shownDuration(run);
    const actions = el('div', {class: 'actions'});
    if (resumable) {
      actions.append(el('button', {id: 'resume', type: 'button', disabled: st.busy, onclick: resume}, 'Resume'));
    }
    if (cancellable) {
      actions.append(el('button', {id: 'cancel', type: 'button', class: 'danger', disabled: st.busy, onclick: cancel}, 'Cancel'));
    }
    const row = (label, ...value) => [el('dt', null, label), el('dd', null, ...value)];
    header.textContent = '';
    header.append(
      el('div', {class: 'title-row'},
        el('h1', null, el('span', {id: 'run-flow'}, run.flow), ' ', el('span', {id: 'run-id', class: 'mono muted'}, run.id)),
        actions),
      el('dl', {class: 'meta'},
        row('Status', badge(run.status, 'run-status'), live ? el('span', {class: 'live'}, ' live') : null),
        row('Started', fmtTime(run.started)),
        row('Duration', duration),
        run.source ? row('Source', run.source) : null,
        run.limits_text ? row('Pools', el('span', {id: 'run-limits'}, run.limits_text)) : null,
        flowPath ? row('Flow file', el('a', {href: '#/flows/' + enc(flowPath)}, flowPath)) : null,
        run.problem ? row('Problem', el('span', {class: 'problem-text'}, run.problem)) : null,
        !resumable && resumeWhy ? row('Resume', el('span', {id: 'resume-why', class: 'note'}, `Not offered here: ${resumeWhy}`)) : null),
      el('div', {class: 'inputs'}, el('span', {class: 'label'}, 'Inputs'),
        el('pre', {id: 'run-inputs'}, JSON.stringify(run.inputs ?? {}, null, 2))));
  }

  async function resume() {
    st.busy = true;
    renderHeader();
    try {
      const res = await api('POST', runUrl(id) + '/resume');
      if (res.id !== id) { location.hash = '#/runs/' + enc(res.id); return; }
      st.ended = false; // the same run again: follow it
      load();
    } catch (err) {
      showError(err);
    } finally {
      st.busy = false;
      if (view.alive && st.data) renderHeader();
    }
  }

  async function cancel() {
    st.busy = true;
    renderHeader();
    try {
      await api('POST', runUrl(id) + '/cancel');
      if (!st.es) load(); // a live run's stream brings the news itself
    } catch (err) {
      showError(err);
    } finally {
      st.busy = false;
      if (view.alive && st.data) renderHeader();
    }
  }

  // ---- graph, table, timeline
  function renderGraph() {
    const graph = st.data.graph;
    dagBox.textContent = '';
    st.nodes = new Map();
    dagNote.textContent = '';
    dagBox.hidden = !graph;
    if (!graph) {
      dagNote.textContent = 'No graph was recorded for this run.';
    } else if (graph.mode === 'layers') {
      const more = graph.layers.length > LAYERS_MAX ? ` Showing the first ${LAYERS_MAX} layers.` : '';
      dagNote.textContent = `${graph.total} steps in ${graph.layers.length} layers: too many to draw one by one, `
        + `so each box counts the steps of one layer.${more}`;
      dagBox.append(drawLayers(graph));
    } else {
      const {svg, nodes} = drawDag(graph);
      st.nodes = nodes;
      for (const [step, tasks] of st.byStep) { // tasks known since the graph was drawn
        const g = nodes.get(step);
        if (g) paintNode(g, stepStatus(tasks.values()));
      }
      fitInto(dagBox, svg, graph.nodes.length);
      markSelected();
    }
  }

  function taskRow(t) {
    const err = t.error ? [t.error.type, t.error.message].filter(Boolean).join(': ') : '';
    return el('tr', {class: 'task', 'data-step': t.step, 'data-item': t.item ?? '', 'data-status': t.status, tabindex: 0},
      el('td', null, t.step, t.added_by ? el('span', {class: 'added-by'}, ` added by ${t.added_by}`) : false,
        t.uses_text ? el('span', {class: 'uses', title: 'what it holds of the run\'s pools and rates'}, ` uses ${t.uses_text}`) : false),
      el('td', {class: 'num'}, t.item_label ?? t.item ?? ''),
      el('td', null, badge(t.status)),
      el('td', {class: 'num'}, t.attempts ?? ''),
      el('td', {class: 'num'}, shownDuration(t),
        t.waited ? el('span', {class: 'waited', title: 'waited for room in its pools or a rate\'s token before it started'},
          ` waited ${t.waited_text}`) : false),
      el('td', {class: 'error-cell', title: err || null}, cut(err, 160)));
  }

  /** Where a task's row goes: its step's place in the graph (else where it was first seen), then its item. */
  function rowOrder(t) {
    const nodes = st.data.graph && st.data.graph.nodes;
    if (nodes && !st.rank) st.rank = new Map(nodes.map((n, k) => [n.name, k]));
    if (!st.seen.has(t.step)) st.seen.set(t.step, st.seen.size);
    const rank = st.rank && st.rank.has(t.step) ? st.rank.get(t.step) : 1e9 + st.seen.get(t.step);
    return [rank, missing(t.item) ? Infinity : t.item]; // a map step's items, then its own record
  }
  const before = (a, b) => { const [x, y] = [rowOrder(a), rowOrder(b)]; return x[0] - y[0] || x[1] - y[1]; };

  function renderTable() {
    st.rows.clear();
    st.rank = null;
    let list = Array.from(st.tasks.values());
    list.sort((a, b) => before(a, b) || 0);
    if (list.length > TABLE_MAX) { // too many: those that did not succeed first, so failures show
      list = [...list.filter((t) => t.status !== 'succeeded'), ...list.filter((t) => t.status === 'succeeded')];
    }
    const frag = document.createDocumentFragment();
    for (const t of list.slice(0, TABLE_MAX)) {
      const tr = taskRow(t);
      st.rows.set(taskKey(t.step, t.item), tr);
      frag.append(tr);
    }
    tbody.textContent = '';
    tbody.append(frag);
    noteTable();
    markSelected();
  }

  function noteTable() {
    const total = st.tasks.size;
    tableNote.hidden = total > 0 && total <= TABLE_MAX;
    tableNote.textContent = total ? `Showing ${TABLE_MAX} of ${total} tasks, those that did not succeed first.` : 'No tasks yet.';
  }

  function updateRow(t, key) {
    const old = st.rows.get(key);
    if (!old && st.rows.size >= TABLE_MAX) return noteTable();
    const tr = taskRow(t);
    if (old) {
      tr.className = old.className; // keeps "selected"
      old.replaceWith(tr);
    } else { // in its place: after its step's earlier items, before the steps that follow
      const next = Array.from(tbody.children).find((row) => {
        const shown = st.tasks.get(taskKey(row.getAttribute('data-step'), itemOf(row)));
        return shown && before(shown, t) > 0;
      });
      if (next) tbody.insertBefore(tr, next);
      else tbody.append(tr);
    }
    st.rows.set(key, tr);
    noteTable();
  }

  function renderTimeline() {
    st.timelineTimer = 0;
    timelineBox.textContent = '';
    const tasks = Array.from(st.tasks.values());
    const starts = tasks.map((t) => t.started).filter((s) => !missing(s));
    timelineNote.hidden = starts.length > 0 && tasks.length <= TIMELINE_MAX;
    if (!starts.length) {
      timelineNote.textContent = 'No task has started yet.';
      return;
    }
    const {run, live} = st.data;
    const t0 = Math.min(run.started ?? Infinity, ...starts);
    const end = run.finished ?? (live ? Date.now() / 1000 : null);
    const {svg, shown} = drawTimeline(tasks, st.data.attempts || [], t0, end);
    timelineNote.textContent = `Showing the first ${shown} of ${tasks.length} tasks (by start time).`;
    timelineBox.append(svg);
  }

  // ---- step panel
  function markSelected() {
    for (const node of view.root.querySelectorAll('.selected')) node.classList.remove('selected');
    if (!st.panel) return;
    const g = st.nodes.get(st.panel.step);
    if (g) g.classList.add('selected');
    const tr = st.rows.get(taskKey(st.panel.step, st.panel.item));
    if (tr) tr.classList.add('selected');
  }

  /** Opens the panel on a task of a step: the given item, else the whole step, else its first item. */
  function openStep(step, item) {
    const tasks = st.byStep.get(step) || new Map();
    const task = item === undefined ? tasks.get(taskKey(step, null)) || tasks.values().next().value
      : tasks.get(taskKey(step, item));
    st.panel = {step, item: task ? task.item ?? null : item ?? null};
    markSelected();
    renderPanel(ctx, step, task || null, tasks);
  }

  function closePanel() {
    st.panel = null;
    st.panelToken++;
    panel.hidden = true;
    panel.textContent = '';
    markSelected();
  }

  const ctx = {view, id, st, panel, openStep, closePanel};
  load();
}
