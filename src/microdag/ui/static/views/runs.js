// The Runs view: the latest runs, filtered by flow and status, refreshed every few seconds.
import {api, enc} from '../api.js';
import {badge, cut, el, showError} from '../dom.js';
import {fmtTime, shownDuration} from '../present.js';

const RUNS_LIMIT = 200;      // runs listed
const POLL_MS = 2000;        // runs list refresh

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

export function viewRuns(view) {
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
    el('td', null, shownDuration(run)));
}
