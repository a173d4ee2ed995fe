// microdag web UI (`python -m microdag ui`): one page of hash-routed views over the
// server's JSON API. Each view gets a `view`: its root element, whether it is still
// shown (`alive`) and `onLeave` for what to undo when the route changes.
import {clearError} from './dom.js';
import {viewRun} from './views/run.js';
import {viewRuns} from './views/runs.js';
import {viewFlow, viewFlows} from './views/flows.js';

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
