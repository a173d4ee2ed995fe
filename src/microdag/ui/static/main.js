// microdag web UI (`python -m microdag ui`): one page of hash-routed views over the
// server's JSON API. Each view gets a `view`: its root element, whether it is still
// shown (`alive`) and `onLeave` for what to undo when the route changes.
import {clearError} from './dom.js';
import {viewRun} from './views/run.js';
import {viewRuns} from './views/runs.js';
import {viewFlow, viewFlows} from './views/flows.js';

let currentView = null;

function makeView(root) {
  const cleanups = [], guards = [];
  return {
    root,
    alive: true,
    onLeave(fn) { cleanups.push(fn); },
    /** fn() returns a question to ask before the view is left (unsaved changes), or null. */
    guard(fn) { guards.push(fn); },
    question() {
      for (const fn of guards) {
        const q = fn();
        if (q) return q;
      }
      return null;
    },
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

let shownHash = null; // the address of the view shown: put back when leaving it is cancelled

/** #/runs, #/runs/ID, #/flows, #/flows/PATH (ID and PATH encodeURIComponent'd). */
function route() {
  if (location.hash === shownHash && currentView) return; // the address put back below
  const question = currentView && currentView.question();
  if (question && !window.confirm(question)) {
    history.replaceState(null, '', shownHash || '#/');
    return;
  }
  shownHash = location.hash;
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
