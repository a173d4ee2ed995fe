'use strict';
// microdag web UI (`python -m microdag ui`): one page of hash-routed views over the
// server's JSON API. Everything that comes from the API is put in the page as text
// (textContent, text nodes, setAttribute), never parsed as HTML.

// ==================================================================== constants

/** Status -> [fill, stroke], as in the HTML report. */
const COLOURS = {
  succeeded: ['#d3f0db', '#2e9d5b'],
  failed: ['#f8d4d4', '#d64545'],
  skipped: ['#ececec', '#9a9a9a'],
  cancelled: ['#fbe7c6', '#d98e04'],
  pending: ['#ffffff', '#9a9a9a'],
  running: ['#d6e6fd', '#3b7be0'],
};
/** A step's status from its items': the first of these present wins, else succeeded. */
const WORST_FIRST = ['failed', 'running', 'cancelled', 'skipped', 'pending'];
const SVG_NS = 'http://www.w3.org/2000/svg';
const LABEL_MAX = 22;        // characters of a node label, ellipsis included
const TIMELINE_MAX = 2000;   // tasks drawn in the timeline
const TABLE_MAX = 2000;      // rows of the tasks table
const LAYERS_MAX = 500;      // boxes drawn in layers mode
const RUNS_LIMIT = 200;      // runs listed
const POLL_MS = 2000;        // runs list refresh
const CHECK_DELAY_MS = 300;  // editor: wait after the last change before checking
const ROW_H = 20, GANTT_LABEL_W = 220, GANTT_W = 760;

// ==================================================================== api

class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

/** Calls the JSON API: resolves with the parsed body, rejects with an ApiError. */
async function api(method, path, body) {
  const init = {method, credentials: 'same-origin', headers: {Accept: 'application/json'}};
  if (method !== 'GET') {
    init.headers['X-Microdag'] = '1';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `Cannot reach the microdag server (${err.message})`, null);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const message = data && typeof data.error === 'string' ? data.error
      : `${res.status} ${res.statusText || 'error'}`;
    throw new ApiError(res.status, message, data);
  }
  return data;
}

const enc = encodeURIComponent;
const runUrl = (id) => '/api/runs/' + enc(id);
const flowUrl = (path) => '/api/flows/' + enc(path);
const itemQuery = (item) => (missing(item) ? '' : '?item=' + enc(item));

let schemaPromise = null;
/** The flow-file JSON Schema, fetched once. */
function loadSchema() {
  if (!schemaPromise) {
    schemaPromise = api('GET', '/api/schema').catch((err) => {
      schemaPromise = null; // try again next time
      throw err;
    });
  }
  return schemaPromise;
}

/** Shows an error (ApiError, Error or text) in the #error banner. */
function showError(err) {
  const box = document.getElementById('error');
  box.querySelector('.msg').textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function clearError() {
  const box = document.getElementById('error');
  box.hidden = true;
  box.querySelector('.msg').textContent = '';
}

// ==================================================================== utilities

/** Sets attributes, listeners (`onclick`...) and text on an element; null/false skip. */
function setup(node, attrs, kids) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (missing(value) || value === false) continue;
    if (typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const kid of kids.flat()) {
    if (!missing(kid) && kid !== false) node.append(kid); // strings become text nodes
  }
  return node;
}

const el = (tag, attrs, ...kids) => setup(document.createElement(tag), attrs, kids);
const svgEl = (tag, attrs, ...kids) => setup(document.createElementNS(SVG_NS, tag), attrs, kids);

const colours = (status) => COLOURS[status] || COLOURS.pending;
const badge = (status, id) => el('span', {class: 'badge', 'data-status': status, id}, status);
const cut = (text, max) => (text.length <= max ? text : text.slice(0, max - 1) + '\u2026');
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const missing = (v) => v === null || v === undefined;
const pretty = (v) => (typeof v === 'string' ? v : JSON.stringify(v, null, 2));
const taskKey = (step, item) => step + '\u0000' + (missing(item) ? '' : item);
const parseJson = (text) => { try { return JSON.parse(text); } catch { return null; } };
const has = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

function fmtTime(t) {
  return missing(t) ? '-' : new Date(t * 1000).toLocaleString();
}

/** Seconds as "0.12 s", "12.3 s", "3 min 4 s", "2 h 5 min". */
function fmtDuration(s) {
  if (!(s >= 0)) return '-';
  if (s < 10) return `${Number(s.toPrecision(2))} s`;
  if (s < 60) return `${Number(s.toFixed(1))} s`;
  const whole = Math.round(s);
  const min = Math.floor(whole / 60);
  return min < 60 ? `${min} min ${whole % 60} s` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

function fmtSpan(started, finished, status) {
  if (missing(started)) return '-';
  if (missing(finished)) return status === 'running' ? 'running' : '-';
  return fmtDuration(Math.max(0, finished - started));
}

const taskDuration = (t) => (missing(t.duration) ? fmtSpan(t.started, t.finished, t.status) : fmtDuration(t.duration));

/** A step's status from its tasks: the whole-step task's, else the worst of its items'. */
function stepStatus(tasks) {
  const list = Array.from(tasks);
  const whole = list.find((t) => missing(t.item));
  if (whole) return whole.status;
  for (const s of WORST_FIRST) if (list.some((t) => t.status === s)) return s;
  return list.length ? 'succeeded' : 'pending';
}

/** Fills ul#problems (and its "none" note) with clickable problem messages. */
function renderProblems(ul, none, problems, onStep) {
  ul.textContent = '';
  for (const p of problems) {
    const li = el('li', {'data-step': p.step ?? null, 'data-key': p.key ?? null}, p.message);
    if (!missing(p.step) && onStep) {
      li.classList.add('link');
      li.addEventListener('click', () => onStep(p.step));
    }
    ul.append(li);
  }
  none.hidden = problems.length > 0;
}

// ==================================================================== svg drawing

/** The edge from (x1, y1), a dependency's right middle, to (x2, y2), a dependent's left middle. */
function edgePath(x1, y1, x2, y2) {
  const c = Math.max(20, (x2 - x1) / 2);
  return `M ${x1} ${y1} C ${x1 + c} ${y1}, ${x2 - c} ${y2}, ${x2} ${y2}`;
}

/** The outline of a band r px above and below edgePath's curve: a target easy to click. */
function edgeBand(x1, y1, x2, y2, r) {
  const c = Math.max(20, (x2 - x1) / 2);
  return `M ${x1} ${y1 - r} C ${x1 + c} ${y1 - r}, ${x2 - c} ${y2 - r}, ${x2} ${y2 - r} `
    + `L ${x2} ${y2 + r} C ${x2 - c} ${y2 + r}, ${x1 + c} ${y1 + r}, ${x1} ${y1 + r} Z`;
}

/** A node's title, box and label at (0, 0); its g is placed with a transform. */
function nodeShape(g, name, w, h) {
  g.append(
    svgEl('title', null, name),
    svgEl('rect', {width: w, height: h, rx: 5, fill: COLOURS.pending[0], stroke: COLOURS.pending[1]}),
    svgEl('text', {x: 8, y: h / 2 + 4}, cut(name, LABEL_MAX)),
  );
}

function paintNode(g, status) {
  const [fill, stroke] = colours(status);
  g.setAttribute('data-status', status);
  const rect = g.querySelector('rect');
  rect.setAttribute('fill', fill);
  rect.setAttribute('stroke', stroke);
  g.querySelector('title').textContent = `${g.getAttribute('data-step')} (${status})`;
}

/** A "full" graph as svg.dag; returns it with a Map step -> g.node for live recolouring. */
function drawDag(graph) {
  const w = graph.node_w, h = graph.node_h;
  const svg = svgEl('svg', {class: 'dag', width: graph.width, height: graph.height,
    viewBox: `0 0 ${graph.width} ${graph.height}`});
  const frag = document.createDocumentFragment();
  const nodes = new Map();
  for (const [a, b] of graph.edges) {
    const from = graph.nodes[a], to = graph.nodes[b];
    if (!from || !to) continue;
    frag.append(svgEl('path', {class: 'edge', 'data-from': from.name, 'data-to': to.name,
      d: edgePath(from.x + w, from.y + h / 2, to.x, to.y + h / 2)}));
  }
  for (const n of graph.nodes) {
    const g = svgEl('g', {class: 'node', 'data-step': n.name, tabindex: 0,
      transform: `translate(${n.x} ${n.y})`});
    nodeShape(g, n.name, w, h);
    paintNode(g, n.status || 'pending');
    nodes.set(n.name, g);
    frag.append(g);
  }
  svg.append(frag);
  return {svg, nodes};
}

/** A "layers" graph: one g.layer box per layer with its step count and counts per status. */
function drawLayers(graph) {
  const BW = 190, GAP = 36, order = Object.keys(COLOURS);
  const layers = graph.layers.slice(0, LAYERS_MAX);
  const rank = (s) => (order.includes(s) ? order.indexOf(s) : order.length);
  const tallest = Math.max(1, ...layers.map((l) => Object.keys(l.statuses || {}).length));
  const BH = 54 + 16 * tallest;
  const width = 20 + layers.length * (BW + GAP) - GAP, height = BH + 20;
  const svg = svgEl('svg', {class: 'dag layers', width, height, viewBox: `0 0 ${width} ${height}`});
  const frag = document.createDocumentFragment();
  layers.forEach((layer, i) => {
    const x = 10 + i * (BW + GAP), y = 10;
    if (i) frag.append(svgEl('path', {class: 'edge', d: edgePath(x - GAP, y + BH / 2, x, y + BH / 2)}));
    const counts = Object.entries(layer.statuses || {}).sort((a, b) => rank(a[0]) - rank(b[0]));
    const worst = WORST_FIRST.find((s) => (layer.statuses || {})[s]) || 'succeeded';
    const sample = layer.sample || [];
    const tip = `Layer ${layer.layer}: ${layer.count} steps\n${sample.join('\n')}`
      + (layer.count > sample.length ? '\n\u2026' : '');
    const g = svgEl('g', {class: 'layer', 'data-layer': layer.layer, transform: `translate(${x} ${y})`},
      svgEl('title', null, tip),
      svgEl('rect', {width: BW, height: BH, rx: 5, fill: '#fafafa', stroke: colours(worst)[1]}),
      svgEl('text', {x: 8, y: 18, class: 'layer-title'}, `Layer ${layer.layer}`),
      svgEl('text', {x: 8, y: 34}, `${layer.count} step${layer.count === 1 ? '' : 's'}`));
    let bx = 8; // a bar split by status, then one line per status
    counts.forEach(([status, n], k) => {
      const [fill, stroke] = colours(status);
      const bw = layer.count ? (BW - 16) * n / layer.count : 0;
      g.append(svgEl('rect', {x: bx, y: 40, width: bw, height: 6, fill: stroke}),
        svgEl('rect', {x: 8, y: 52 + 16 * k, width: 10, height: 10, fill, stroke}),
        svgEl('text', {x: 24, y: 61 + 16 * k}, `${n} ${status}`));
      bx += bw;
    });
    frag.append(g);
  });
  svg.append(frag);
  return svg;
}

/** Tick times from 0 to span: multiples of 1, 2 or 5 times a power of ten, at most 9. */
function niceTicks(span) {
  if (!(span > 0)) return [0];
  let step = 10 ** Math.floor(Math.log10(span / 5));
  for (const f of [1, 2, 5, 10]) {
    if (span / (step * f) <= 8) { step *= f; break; }
  }
  const ticks = [];
  for (let k = 0; k * step <= span + 1e-9; k++) ticks.push(k * step);
  return ticks;
}

/**
 * svg.timeline: a row per task (the first TIMELINE_MAX by start), a bar from its start to
 * its end (or `end` while it runs), earlier failed attempts drawn lighter before it.
 */
function drawTimeline(tasks, attempts, t0, end) {
  const startOf = (t) => (missing(t.started) ? Infinity : t.started);
  const rows = tasks.slice().sort((a, b) => startOf(a) - startOf(b)).slice(0, TIMELINE_MAX);
  const earlier = new Map();
  for (const a of attempts) {
    const key = taskKey(a.step, a.item);
    if (!earlier.has(key)) earlier.set(key, []);
    earlier.get(key).push(a);
  }
  let last = Math.max(t0, end || t0);
  for (const t of rows) last = Math.max(last, t.started ?? t0, t.finished ?? t0);
  for (const list of earlier.values()) for (const a of list) last = Math.max(last, a.finished ?? t0);
  const scale = last > t0 ? GANTT_W / (last - t0) : 0;
  const height = 30 + rows.length * ROW_H, width = GANTT_LABEL_W + GANTT_W + 60;
  const svg = svgEl('svg', {class: 'timeline', width, height, viewBox: `0 0 ${width} ${height}`});
  const frag = document.createDocumentFragment();
  for (const tick of niceTicks(last - t0)) {
    const x = (GANTT_LABEL_W + tick * scale).toFixed(1);
    frag.append(svgEl('line', {class: 'axis', x1: x, y1: 18, x2: x, y2: height}),
      svgEl('text', {class: 'tick', x, y: 12, 'text-anchor': 'middle'}, tick ? fmtDuration(tick) : '0'));
  }
  const [failFill, failStroke] = COLOURS.failed;
  rows.forEach((t, k) => {
    const y = 24 + k * ROW_H;
    const label = missing(t.item) ? t.step : `${t.step}[${t.item}]`;
    frag.append(svgEl('text', {class: 'row', x: 4, y: y + 12}, svgEl('title', null, label), cut(label, 30)));
    if (missing(t.started)) return;
    for (const a of earlier.get(taskKey(t.step, t.item)) || []) {
      if (missing(a.started)) continue;
      const ax = GANTT_LABEL_W + (a.started - t0) * scale;
      const aw = Math.max(1, ((a.finished ?? a.started) - a.started) * scale);
      frag.append(svgEl('rect', {class: 'attempt', 'data-step': t.step, 'data-attempt': a.attempt,
        x: ax.toFixed(1), y: y + 2, width: aw.toFixed(1), height: ROW_H - 5, fill: failFill, stroke: failStroke},
      svgEl('title', null, `${label}: attempt ${a.attempt} failed: ${a.error_type || ''}: ${a.error_message || ''}`
        + `\nstarted ${fmtTime(a.started)}\nduration ${fmtSpan(a.started, a.finished, 'failed')}`)));
    }
    const [fill, stroke] = colours(t.status);
    const x = GANTT_LABEL_W + (t.started - t0) * scale;
    const w = Math.max(1, ((t.finished ?? last) - t.started) * scale);
    frag.append(svgEl('rect', {class: 'bar', 'data-step': t.step, 'data-item': t.item ?? null,
      'data-status': t.status, x: x.toFixed(1), y: y + 2, width: w.toFixed(1), height: ROW_H - 5, fill, stroke},
    svgEl('title', null, `${label}: ${t.status}, attempts ${t.attempts}\nstarted ${fmtTime(t.started)}`
      + `\nduration ${fmtSpan(t.started, t.finished, t.status)}`)));
    if (t.attempts > 1) {
      frag.append(svgEl('text', {class: 'attempts', x: (x + w + 4).toFixed(1), y: y + 13}, `\u00d7${t.attempts}`));
    }
  });
  svg.append(frag);
  return {svg, shown: rows.length};
}

// ==================================================================== views: runs

const runFilters = {flow: '', status: ''}; // kept while the page lives

/** Sets a select's options (an "all" option first) when the list changed; keeps the value. */
function fillSelect(select, values, current, allLabel) {
  const list = Array.from(new Set([...(values || []), ...(current ? [current] : [])]));
  const signature = JSON.stringify(list);
  if (select.dataset.options !== signature) {
    select.dataset.options = signature;
    select.textContent = '';
    select.append(el('option', {value: ''}, allLabel), ...list.map((v) => el('option', {value: v}, v)));
  }
  select.value = current;
}

function viewRuns(view) {
  const flowSel = el('select', {id: 'flow-filter'});
  const statusSel = el('select', {id: 'status-filter'});
  const tbody = el('tbody');
  const note = el('p', {class: 'muted', hidden: true});
  view.root.append(
    el('div', {class: 'toolbar'}, el('h1', null, 'Runs'),
      el('label', null, 'Flow ', flowSel), el('label', null, 'Status ', statusSel)),
    el('table', {id: 'runs', class: 'grid clickable'},
      el('thead', null, el('tr', null, ['Run', 'Flow', 'Status', 'Started', 'Duration'].map((h) => el('th', null, h)))),
      tbody),
    note);

  let shown = null, busy = false;
  const rowData = new WeakMap(); // tr.run -> the JSON of the run it shows
  async function load() {
    if (busy) return;
    busy = true;
    const query = new URLSearchParams({limit: String(RUNS_LIMIT)});
    if (runFilters.flow) query.set('flow', runFilters.flow);
    if (runFilters.status) query.set('status', runFilters.status);
    try {
      const data = await api('GET', '/api/runs?' + query);
      if (!view.alive) return;
      fillSelect(flowSel, data.flows, runFilters.flow, 'all flows');
      fillSelect(statusSel, data.statuses, runFilters.status, 'all statuses');
      const signature = JSON.stringify(data.runs);
      if (signature === shown) return; // nothing changed: keep the rows (no flicker)
      shown = signature;
      // rows of runs that did not change are kept (moved, not rebuilt)
      const old = new Map(Array.from(tbody.children, (tr) => [tr.getAttribute('data-run-id'), tr]));
      const frag = document.createDocumentFragment();
      for (const run of data.runs) {
        const json = JSON.stringify(run);
        let tr = old.get(run.id);
        if (!tr || rowData.get(tr) !== json) {
          tr = runRow(run);
          rowData.set(tr, json);
        }
        frag.append(tr);
      }
      tbody.textContent = '';
      tbody.append(frag);
      note.hidden = data.runs.length > 0 && data.runs.length < RUNS_LIMIT;
      note.textContent = data.runs.length ? `Showing the latest ${RUNS_LIMIT} runs.` : 'No runs.';
    } catch (err) {
      if (view.alive) showError(err);
    } finally {
      busy = false;
    }
  }

  for (const [select, key] of [[flowSel, 'flow'], [statusSel, 'status']]) {
    select.addEventListener('change', () => {
      runFilters[key] = select.value;
      shown = null;
      load();
    });
  }
  tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr.run');
    if (tr && !e.target.closest('a')) location.hash = '#/runs/' + enc(tr.getAttribute('data-run-id'));
  });
  load();
  const timer = setInterval(() => { if (!document.hidden) load(); }, POLL_MS);
  view.onLeave(() => clearInterval(timer));
}

function runRow(run) {
  return el('tr', {class: 'run', 'data-run-id': run.id, 'data-status': run.status, title: run.problem || null},
    el('td', {class: 'mono'}, el('a', {href: '#/runs/' + enc(run.id)}, run.id)),
    el('td', null, run.flow),
    el('td', null, badge(run.status), run.problem ? el('span', {class: 'problem-text'}, ' ' + cut(run.problem, 60)) : null),
    el('td', null, fmtTime(run.started)),
    el('td', null, fmtSpan(run.started, run.finished, run.status)));
}

// ==================================================================== views: run

function viewRun(view, id) {
  const st = {
    data: null,          // the last GET answer; run and live merged from events
    tasks: new Map(),    // taskKey -> task
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
    const {run, live, cancellable, resumable, flow_path: flowPath} = st.data;
    const running = run.status === 'running' && missing(run.finished);
    const duration = running && run.started ? `${fmtDuration(Date.now() / 1000 - run.started)} so far`
      : fmtSpan(run.started, run.finished, run.status);
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
        flowPath ? row('Flow file', el('a', {href: '#/flows/' + enc(flowPath)}, flowPath)) : null,
        run.problem ? row('Problem', el('span', {class: 'problem-text'}, run.problem)) : null),
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
      dagBox.append(svg);
      markSelected();
    }
  }

  function taskRow(t) {
    const err = t.error ? [t.error.type, t.error.message].filter(Boolean).join(': ') : '';
    return el('tr', {class: 'task', 'data-step': t.step, 'data-item': t.item ?? '', 'data-status': t.status, tabindex: 0},
      el('td', null, t.step),
      el('td', {class: 'num'}, t.item ?? ''),
      el('td', null, badge(t.status)),
      el('td', {class: 'num'}, t.attempts ?? ''),
      el('td', {class: 'num'}, taskDuration(t)),
      el('td', {class: 'error-cell', title: err || null}, cut(err, 160)));
  }

  function renderTable() {
    st.rows.clear();
    let list = Array.from(st.tasks.values());
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
    } else {
      tbody.append(tr);
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
    renderPanel(step, task || null, tasks);
  }

  function closePanel() {
    st.panel = null;
    st.panelToken++;
    panel.hidden = true;
    panel.textContent = '';
    markSelected();
  }

  function renderPanel(step, task, tasks) {
    const token = ++st.panelToken;
    const current = () => view.alive && token === st.panelToken;
    panel.textContent = '';
    panel.hidden = false;
    panel.append(el('button', {type: 'button', class: 'close', 'aria-label': 'Close', onclick: closePanel}, '\u00d7'),
      el('h3', null, step));
    const items = Array.from(tasks.values()).filter((t) => !missing(t.item));
    if (items.length) { // a mapped step: pick the whole step or one item
      const select = el('select', {class: 'item-select', 'aria-label': 'Task'});
      if (tasks.has(taskKey(step, null))) select.append(el('option', {value: ''}, 'whole step'));
      for (const t of items.slice(0, 1000)) select.append(el('option', {value: String(t.item)}, `item ${t.item} (${t.status})`));
      select.value = task && !missing(task.item) ? String(task.item) : '';
      select.addEventListener('change', () => openStep(step, select.value === '' ? null : Number(select.value)));
      panel.append(el('label', {class: 'item-pick'}, 'Task ', select));
    }
    if (!task) {
      panel.append(el('p', null, badge('pending'), ' This step has not run.'));
    } else {
      panel.append(el('dl', {class: 'meta'},
        el('dt', null, 'Status'), el('dd', null, badge(task.status)),
        el('dt', null, 'Attempts'), el('dd', null, String(task.attempts ?? '-')),
        el('dt', null, 'Started'), el('dd', null, fmtTime(task.started)),
        el('dt', null, 'Duration'), el('dd', null, taskDuration(task))));
      if (task.error) {
        panel.append(el('h4', null, 'Error'),
          el('p', {class: 'error-msg'}, [task.error.type, task.error.message].filter(Boolean).join(': ')),
          el('pre', {class: 'error'}, task.error.traceback || task.error.message || ''));
      }
      panel.append(el('h4', null, 'Output'));
      if (!missing(task.output)) {
        const pre = el('pre', {class: 'output'}, task.output + (task.output_truncated ? '\n\u2026' : ''));
        const more = el('button', {type: 'button', class: 'more'}, 'show all');
        more.addEventListener('click', async () => {
          more.disabled = true;
          try {
            const res = await api('GET', `${runUrl(id)}/output/${enc(step)}${itemQuery(task.item)}`);
            if (!current()) return;
            pre.textContent = res.json ? pretty(res.output) : String(res.output);
            more.remove();
          } catch (err) {
            more.disabled = false;
            showError(err);
          }
        });
        panel.append(pre, more);
      } else {
        panel.append(el('p', {class: 'muted'}, 'No output recorded.'));
      }
      panel.append(el('h4', null, 'Log'));
      if (task.has_log) {
        const log = el('pre', {class: 'log'}, 'loading\u2026');
        panel.append(log);
        api('GET', `${runUrl(id)}/logs/${enc(step)}${itemQuery(task.item)}`)
          .then((res) => { if (current()) log.textContent = res.text || '(empty)'; })
          .catch((err) => { if (current()) { log.textContent = ''; showError(err); } });
      } else {
        panel.append(el('p', {class: 'muted'}, 'Nothing was logged.'));
      }
    }
    const result = el('div', {id: 'step-result'});
    const button = el('button', {id: 'run-step', type: 'button'}, "Run this step on this run's outputs");
    button.addEventListener('click', () => runStep(step, button, result, current));
    panel.append(el('h4', null, 'Try it again'), button, result);
  }

  async function runStep(step, button, result, current) {
    const label = button.textContent;
    button.disabled = true;
    button.classList.add('busy');
    button.textContent = 'Running\u2026';
    result.textContent = '';
    result.append(el('p', {class: 'muted'}, `Running ${step}\u2026`));
    try {
      const res = await api('POST', `${runUrl(id)}/steps/${enc(step)}/run`);
      if (!current()) return;
      result.textContent = '';
      result.append(el('p', null, 'Result: ', badge(res.status)));
      if (!missing(res.output)) result.append(el('pre', {class: 'output'}, pretty(res.output)));
      if (res.error) result.append(el('pre', {class: 'error'}, res.error));
      result.append(el('h4', null, 'Log'), el('pre', {class: 'log'}, res.log || ''));
    } catch (err) {
      if (current()) result.textContent = '';
      showError(err);
    } finally {
      button.disabled = false;
      button.classList.remove('busy');
      button.textContent = label;
    }
  }

  load();
}

// ==================================================================== views: flows

function viewFlows(view) {
  const ul = el('ul', {id: 'flows', class: 'flow-list'});
  const none = el('p', {class: 'muted', hidden: true}, 'No flow files were found under the served folder.');
  view.root.append(el('h1', null, 'Flows'), ul, none);
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

// ==================================================================== views: flow

function viewFlow(view, path) {
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
      view.root.append(el('div', {class: 'dag-scroll'}, drawDag(data.graph).svg));
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

// ---------------------------------------------------------------- flow editor

/**
 * The editor of an editable flow file. `ed.doc` (the parsed file) is the source of truth:
 * every edit changes it, then it is sent whole to .../check (debounced) and on save.
 */
function flowEditor(view, path, data, problemsUl, none) {
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
  };
  if (!isObject(ed.doc.steps)) ed.doc.steps = {};
  for (const s of data.steps || []) ed.implied.set(s.name, s.depends || []);

  // ---- DOM
  const svg = svgEl('svg', {class: 'canvas', width: 600, height: 300});
  const edgesLayer = svgEl('g', {class: 'edges'});
  const nodesLayer = svgEl('g', {class: 'nodes'});
  const tempLine = svgEl('line', {class: 'temp', visibility: 'hidden'});
  svg.append(svgEl('defs', null, svgEl('marker', {id: 'md-arrow', viewBox: '0 0 10 10', refX: 16, refY: 5,
    markerWidth: 8, markerHeight: 8, markerUnits: 'userSpaceOnUse', orient: 'auto'},
  svgEl('path', {d: 'M 0 0 L 10 5 L 0 10 z'}))), edgesLayer, nodesLayer, tempLine);
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
  const form = el('form', {id: 'step-form', autocomplete: 'off'});
  view.root.append(el('h2', null, 'Editor'),
    el('div', {class: 'toolbar'},
      el('button', {id: 'add-step', type: 'button', onclick: () => { addBox.hidden = false; newName.focus(); }}, 'Add step'),
      addBox, removeStepBtn, removeEdgeBtn, saveBtn, saveStatus),
    note,
    el('div', {class: 'editor'},
      el('div', {class: 'canvas-scroll'}, svg),
      el('div', {class: 'side'}, el('h3', null, 'Steps'), stepsUl, form)));
  view.onLeave(() => clearTimeout(ed.timer));

  const say = (text) => { note.textContent = text; };
  const selectedStep = () => (ed.sel && !missing(ed.sel.step) ? ed.sel.step : null);
  const names = () => Object.keys(ed.doc.steps);
  newName.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') addStep(newName.value);
    if (e.key === 'Escape') addBox.hidden = true;
  });

  // ---- positions and edges
  /** Places a step at hint, moved down past any node it would overlap. */
  function place(name, hint) {
    let {x, y} = hint;
    const clash = () => Array.from(ed.pos.values()).some((p) => Math.abs(p.x - x) < ed.w && Math.abs(p.y - y) < ed.h + 6);
    while (clash()) y += ed.h + 12;
    ed.pos.set(name, {x, y});
  }

  /** Forgets removed steps; puts every step the user has not moved where the server's
   * layout has it (so a new edge moves its step to the right layer); new steps without a
   * place yet go where they overlap nothing. */
  function syncPositions(g) {
    const all = new Set(names());
    for (const name of Array.from(ed.pos.keys())) if (!all.has(name)) { ed.pos.delete(name); ed.pinned.delete(name); }
    const server = new Map(((g && g.nodes) || []).map((n) => [n.name, n]));
    for (const name of all) {
      const n = server.get(name);
      if (n && !ed.pinned.has(name)) ed.pos.set(name, {x: n.x, y: n.y});
      else if (!ed.pos.has(name)) place(name, {x: 10, y: 10});
    }
  }

  /** A step's dependencies: the server's, plus depends_on and inputs edited since. */
  function depsOf(name) {
    const step = ed.doc.steps[name];
    const deps = [...(ed.implied.get(name) || [])];
    if (isObject(step)) {
      if (Array.isArray(step.depends_on)) deps.push(...step.depends_on);
      if (isObject(step.inputs)) deps.push(...Object.values(step.inputs));
    }
    return Array.from(new Set(deps)).filter((d) => d !== name && typeof d === 'string' && has(ed.doc.steps, d));
  }

  // Nodes and edges are updated in place: elements of steps and edges that remain are kept
  // (moved if need be), so a check's answer does not replace what the user is pointing at.
  function drawNodes() {
    const want = new Set(names());
    for (const [name, g] of ed.nodeEls) if (!want.has(name)) { g.remove(); ed.nodeEls.delete(name); }
    const frag = document.createDocumentFragment();
    for (const name of want) {
      let g = ed.nodeEls.get(name);
      if (!g) {
        g = svgEl('g', {class: 'node', 'data-step': name, tabindex: 0});
        nodeShape(g, name, ed.w, ed.h);
        g.append(svgEl('circle', {class: 'port-in', cx: 0, cy: ed.h / 2, r: 5}),
          svgEl('circle', {class: 'port-out', cx: ed.w, cy: ed.h / 2, r: 6, tabindex: 0},
            svgEl('title', null, `Drag onto a step (or click, then click it) to run it after ${name}`)));
        ed.nodeEls.set(name, g);
        frag.append(g);
      }
      const p = ed.pos.get(name);
      g.setAttribute('transform', `translate(${p.x} ${p.y})`);
    }
    nodesLayer.append(frag);
  }

  // Each edge: a visible curve and, on top, path.edge: a transparent band 10 px high around
  // it that takes the clicks (a band, not a thick stroke, so that a horizontal edge still has
  // a box of non-zero size whose centre is on the curve).
  function drawEdges() {
    const want = new Map();
    for (const to of names()) for (const from of depsOf(to)) want.set(from + '\u0000' + to, [from, to]);
    for (const [key, g] of ed.edgeEls) if (!want.has(key)) { g.remove(); ed.edgeEls.delete(key); }
    const frag = document.createDocumentFragment();
    for (const [key, [from, to]] of want) {
      let g = ed.edgeEls.get(key);
      if (!g) {
        g = svgEl('g', {class: 'edge-g'}, svgEl('path', {class: 'edge-line', 'marker-end': 'url(#md-arrow)'}),
          svgEl('path', {class: 'edge', 'data-from': from, 'data-to': to}, svgEl('title', null, `${from} \u2192 ${to}`)));
        ed.edgeEls.set(key, g);
        frag.append(g);
      }
      const a = ed.pos.get(from), b = ed.pos.get(to);
      const [x1, y1, x2, y2] = [a.x + ed.w, a.y + ed.h / 2, b.x, b.y + ed.h / 2];
      g.firstChild.setAttribute('d', edgePath(x1, y1, x2, y2));
      g.lastChild.setAttribute('d', edgeBand(x1, y1, x2, y2, 5));
    }
    edgesLayer.append(frag);
    markSelection();
  }

  function sizeCanvas() {
    let w = 600, h = 300;
    for (const p of ed.pos.values()) {
      w = Math.max(w, p.x + ed.w + 40);
      h = Math.max(h, p.y + ed.h + 40);
    }
    svg.setAttribute('width', w);
    svg.setAttribute('height', h);
  }

  /** ul#steps, rebuilt only when the names or kinds changed. */
  function renderList() {
    const kinds = names().map((name) => {
      const s = ed.doc.steps[name];
      return [name, isObject(s) ? (has(s, 'call') ? 'call' : has(s, 'command') ? 'command' : '') : ''];
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
    syncPositions(null);
    drawNodes();
    drawEdges();
    sizeCanvas();
    renderList();
    markSelection();
    markProblems();
  }

  function markSelection() {
    const step = selectedStep();
    for (const [name, g] of ed.nodeEls) {
      g.classList.toggle('selected', name === step);
      g.classList.toggle('connecting', name === ed.connectFrom);
    }
    for (const g of edgesLayer.children) {
      const p = g.lastChild;
      g.classList.toggle('selected', !!ed.sel && ed.sel.from === p.getAttribute('data-from') && ed.sel.to === p.getAttribute('data-to'));
    }
    for (const li of stepsUl.children) li.classList.toggle('selected', li.getAttribute('data-step') === step);
    removeStepBtn.disabled = step === null;
    removeEdgeBtn.disabled = !(ed.sel && ed.sel.from !== undefined);
  }

  function markProblems() {
    const bad = new Set(ed.problems.map((p) => p.step).filter((s) => !missing(s)));
    for (const [name, g] of ed.nodeEls) g.classList.toggle('problem', bad.has(name));
    for (const li of stepsUl.children) li.classList.toggle('problem', bad.has(li.getAttribute('data-step')));
    const step = selectedStep();
    const byKey = new Map();
    for (const p of ed.problems) {
      if (step !== null && p.step === step && p.key) byKey.set(p.key, [...(byKey.get(p.key) || []), p.message]);
    }
    for (const field of form.querySelectorAll('.field')) {
      const messages = byKey.get(field.getAttribute('data-key'));
      field.querySelector('[name]').classList.toggle('problem', !!messages);
      field.classList.toggle('has-problem', !!messages);
      field.querySelector('.field-problem').textContent = messages ? messages.join('; ') : '';
    }
    renderProblems(problemsUl, none, ed.problems, (s) => { if (has(ed.doc.steps, s)) select({step: s}); });
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
    if (selectedStep() !== before) renderForm();
    markProblems();
  }

  // ---- edits
  function changed() {
    ed.version++;
    saveStatus.textContent = 'unsaved changes';
    clearTimeout(ed.timer);
    ed.timer = setTimeout(check, CHECK_DELAY_MS);
  }

  function connect(from, to) {
    if (from === to) return say('A step cannot depend on itself.');
    const step = ed.doc.steps[to];
    if (!isObject(step)) return say(`${to} is not a table of options: fix it in the file.`);
    if (depsOf(to).includes(from)) return say(`${to} already runs after ${from}.`);
    step.depends_on = [...(Array.isArray(step.depends_on) ? step.depends_on : []), from];
    say(`${to} now runs after ${from}.`);
    ed.sel = {step: to}; // show the target's form, with its new depends_on
    drawEdges();
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
      drawEdges();
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
    place(name, {x: 10, y: 10});
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
    syncPositions(res.graph);
    redraw();
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

  async function save() {
    clearTimeout(ed.timer);
    ed.timer = 0;
    const seq = ++ed.seq, version = ed.version;
    saveBtn.disabled = true;
    saveStatus.textContent = 'saving\u2026';
    try {
      const res = await api('PUT', flowUrl(path), {doc: ed.doc});
      if (!view.alive) return;
      if (seq === ed.seq) applyResult(res);
      saveStatus.textContent = version === ed.version ? 'saved' : 'unsaved changes';
    } catch (err) {
      if (!view.alive) return;
      if (err.status === 422 && err.data) {
        ed.problems = err.data.problems || [];
        markProblems();
        saveStatus.textContent = '';
        saveStatus.append(`not saved: ${err.message}`, el('ul', null, ed.problems.map((p) => el('li', null, p.message))));
      } else {
        saveStatus.textContent = 'not saved';
        showError(err);
      }
    } finally {
      saveBtn.disabled = false;
    }
  }

  // ---- the step form, built from the schema's step options
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

  function onField(e) {
    const input = e.target.closest('[name]');
    const name = selectedStep();
    if (!input || name === null || !isObject(ed.doc.steps[name])) return;
    const key = input.getAttribute('name');
    const value = readField(input);
    if (value === undefined) delete ed.doc.steps[name][key];
    else ed.doc.steps[name][key] = value;
    if (key === 'depends_on' || key === 'inputs') drawEdges();
    if (key === 'call' || key === 'command') renderList();
    markSelection();
    markProblems();
    changed();
  }

  function renderForm() {
    form.textContent = '';
    const name = selectedStep();
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
    if (!ed.stepSchema) {
      form.append(el('p', {class: 'muted'}, 'Loading the options\u2026'));
      return;
    }
    const props = ed.stepSchema.properties || {};
    for (const [key, prop] of Object.entries(props)) form.append(makeField(key, prop, step[key]));
    const others = Object.keys(step).filter((k) => !has(props, k));
    if (others.length) form.append(el('p', {class: 'note'}, `Options not in the schema, kept as they are: ${others.join(', ')}`));
    markProblems();
  }

  /** Resolves a local "#/..." $ref of the schema. */
  function resolve(schema, node) {
    if (!node || typeof node.$ref !== 'string' || !node.$ref.startsWith('#/')) return node;
    return node.$ref.slice(2).split('/').reduce((at, part) => (at ? at[part.replace(/~1/g, '/').replace(/~0/g, '~')] : at), schema);
  }

  // ---- pointer and keyboard: select, move nodes, connect ports
  let drag = null; // {mode: 'move'|'connect', name, dx, dy, x0, y0, moved}
  const toSvg = (e) => {
    const r = svg.getBoundingClientRect(); // the svg is drawn at scale 1: no viewBox
    return {x: e.clientX - r.left, y: e.clientY - r.top};
  };
  const nodeAt = (e) => {
    const hit = document.elementFromPoint(e.clientX, e.clientY);
    return hit && hit.closest ? hit.closest('svg.canvas g.node') : null;
  };

  svg.addEventListener('pointerdown', (e) => {
    ed.dragged = false;
    const g = e.target.closest('g.node');
    if (e.button !== 0 || !g) return;
    const name = g.getAttribute('data-step');
    const p = toSvg(e), at = ed.pos.get(name);
    if (e.target.classList.contains('port-out') && ed.connectFrom !== name) cancelConnect(); // a new start
    drag = e.target.classList.contains('port-out')
      ? {mode: 'connect', name, x0: p.x, y0: p.y, moved: false}
      : {mode: 'move', name, dx: p.x - at.x, dy: p.y - at.y, x0: p.x, y0: p.y, moved: false};
    window.addEventListener('pointermove', onMove);
    window.addEventListener('pointerup', onUp);
    window.addEventListener('pointercancel', onUp);
    e.preventDefault(); // no text selection while dragging
  });

  function onMove(e) {
    const p = toSvg(e);
    if (!drag.moved && Math.hypot(p.x - drag.x0, p.y - drag.y0) < 4) return;
    drag.moved = ed.dragged = true;
    if (drag.mode === 'move') {
      const at = {x: Math.max(0, p.x - drag.dx), y: Math.max(0, p.y - drag.dy)};
      ed.pos.set(drag.name, at);
      ed.pinned.add(drag.name);
      const g = ed.nodeEls.get(drag.name);
      if (g) g.setAttribute('transform', `translate(${at.x} ${at.y})`);
      drawEdges();
    } else {
      const from = ed.pos.get(drag.name);
      setup(tempLine, {x1: from.x + ed.w, y1: from.y + ed.h / 2, x2: p.x, y2: p.y, visibility: 'visible'}, []);
      const target = nodeAt(e);
      for (const g of ed.nodeEls.values()) g.classList.toggle('drop', g === target && g.getAttribute('data-step') !== drag.name);
    }
  }

  function onUp(e) {
    window.removeEventListener('pointermove', onMove);
    window.removeEventListener('pointerup', onUp);
    window.removeEventListener('pointercancel', onUp);
    const d = drag;
    drag = null;
    if (!d || !d.moved) return;
    if (d.mode === 'move') return sizeCanvas();
    tempLine.setAttribute('visibility', 'hidden');
    for (const g of ed.nodeEls.values()) g.classList.remove('drop');
    const target = e.type === 'pointerup' ? nodeAt(e) : null;
    if (target) connect(d.name, target.getAttribute('data-step'));
  }

  /** A click or Enter on the canvas: a port-out starts a connection, a node ends it or is selected. */
  function activate(target) {
    const edge = target.closest('path.edge');
    if (edge) return select({from: edge.getAttribute('data-from'), to: edge.getAttribute('data-to')});
    const g = target.closest('g.node');
    if (!g) return select(null);
    const name = g.getAttribute('data-step');
    if (target.closest('circle.port-out') && ed.connectFrom !== name) {
      ed.connectFrom = name;
      markSelection();
      return say(`Now click the step that should run after ${name} (Esc cancels).`);
    }
    if (ed.connectFrom !== null && ed.connectFrom !== name) {
      const from = ed.connectFrom;
      cancelConnect();
      return connect(from, name);
    }
    select({step: name});
  }

  svg.addEventListener('click', (e) => {
    if (ed.dragged) { ed.dragged = false; return; } // the end of a drag, not a click
    activate(e.target);
  });
  svg.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); activate(e.target); }
    if (e.key === 'Escape') cancelConnect();
  });
  stepsUl.addEventListener('click', (e) => {
    const li = e.target.closest('li[data-step]');
    if (li) select({step: li.getAttribute('data-step')});
  });
  stepsUl.addEventListener('keydown', (e) => {
    const li = e.target.closest('li[data-step]');
    if (li && e.key === 'Enter') select({step: li.getAttribute('data-step')});
  });
  form.addEventListener('input', onField);
  form.addEventListener('change', onField);
  form.addEventListener('submit', (e) => e.preventDefault());

  for (const n of graph ? graph.nodes : []) ed.pos.set(n.name, {x: n.x, y: n.y});
  redraw();
  renderForm();
  loadSchema().then((schema) => {
    if (!view.alive) return;
    const steps = resolve(schema, schema && schema.properties && schema.properties.steps);
    ed.stepSchema = resolve(schema, steps && steps.additionalProperties) || {properties: {}};
    renderForm();
  }).catch((err) => { if (view.alive) showError(err); });
}

// ==================================================================== router

let currentView = null;

function makeView(root) {
  const cleanups = [];
  return {
    root,
    alive: true,
    onLeave(fn) { cleanups.push(fn); },
    leave() {
      this.alive = false;
      for (const fn of cleanups) fn();
    },
  };
}

function decodePart(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** #/runs, #/runs/ID, #/flows, #/flows/PATH (ID and PATH encodeURIComponent'd). */
function route() {
  if (currentView) currentView.leave();
  clearError();
  const main = document.getElementById('main');
  main.textContent = '';
  const view = makeView(main);
  currentView = view;
  const hash = location.hash.replace(/^#\/?/, '');
  const [section, ...rest] = hash.split('/');
  const arg = decodePart(rest.join('/'));
  const flows = section === 'flows';
  document.getElementById('nav-runs').classList.toggle('active', !flows);
  document.getElementById('nav-flows').classList.toggle('active', flows);
  if (flows && arg) {
    document.title = `${arg} \u00b7 microdag`;
    viewFlow(view, arg);
  } else if (flows) {
    document.title = 'Flows \u00b7 microdag';
    viewFlows(view);
  } else if (section === 'runs' && arg) {
    document.title = `Run ${arg} \u00b7 microdag`;
    viewRun(view, arg);
  } else {
    document.title = 'Runs \u00b7 microdag';
    viewRuns(view);
  }
  window.scrollTo(0, 0);
}

document.querySelector('#error .close').addEventListener('click', clearError);
window.addEventListener('hashchange', route);
route();
