// The step panel of the Run view: a task's status, error, output and log, and
// "run this step again" on the run's outputs.
import {api, enc, itemQuery, runUrl} from '../api.js';
import {badge, el, missing, showError} from '../dom.js';
import {fmtTime, preview, shownDuration, taskKey} from '../present.js';

/** Fills ctx.panel with a step's task (null: not run) and, for a mapped step, a pick of its items. */
export function renderPanel(ctx, step, task, tasks) {
  const {view, id, st, panel, openStep, closePanel} = ctx;
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
    for (const t of items.slice(0, 1000)) select.append(el('option', {value: String(t.item)}, `item ${t.item_label ?? t.item} (${t.status})`));
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
      ...(task.added_by ? [el('dt', null, 'Added by'), el('dd', null, task.added_by)] : []),
      ...(task.uses_text ? [el('dt', null, 'Uses'), el('dd', {id: 'step-uses'}, task.uses_text)] : []),
      ...(missing(task.waited) ? [] : [el('dt', null, 'Waited'), el('dd', {id: 'step-waited'}, task.waited_text)]),
      el('dt', null, 'Started'), el('dd', null, fmtTime(task.started)),
      el('dt', null, 'Duration'), el('dd', null, shownDuration(task))));
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
          pre.textContent = res.json ? preview(res.output) : String(res.output);
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
  button.addEventListener('click', () => runStep(id, step, button, result, current));
  panel.append(el('h4', null, 'Try it again'), button, result);
}

async function runStep(id, step, button, result, current) {
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
    if (!missing(res.output)) result.append(el('pre', {class: 'output'}, preview(res.output)));
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

