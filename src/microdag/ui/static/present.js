// How a run is shown: the page's copy of the rules of microdag/_present.py (status
// order, a map step's status from its items', durations as the command line prints
// them, previews). Where the API sends `duration_text`, the page shows that text.
import {missing} from './dom.js';

/** Status -> [fill, stroke], as in the HTML report. */
export const COLOURS = {
  succeeded: ['#d3f0db', '#2e9d5b'],
  failed: ['#f8d4d4', '#d64545'],
  skipped: ['#ececec', '#9a9a9a'],
  cancelled: ['#fbe7c6', '#d98e04'],
  pending: ['#ffffff', '#9a9a9a'],
  running: ['#d6e6fd', '#3b7be0'],
};
export const colours = (status) => COLOURS[status] || COLOURS.pending;

/** Statuses worst first: a step of items, a layer or a list shows the first one found. */
export const WORST_FIRST = ['failed', 'running', 'cancelled', 'skipped', 'pending'];

/** The worst of `statuses`; succeeded when all succeeded, an unknown status before that; pending for none. */
export function worst(statuses) {
  const seen = new Set(statuses);
  for (const s of WORST_FIRST) if (seen.has(s)) return s;
  const unknown = Array.from(seen).filter((s) => s !== 'succeeded').sort();
  if (unknown.length) return unknown[0];
  return seen.size ? 'succeeded' : 'pending';
}

/** A step's status from its tasks: the whole-step task's, else the worst of its items'. */
export function stepStatus(tasks) {
  const list = Array.from(tasks);
  const whole = list.find((t) => missing(t.item));
  return whole ? whole.status : worst(list.map((t) => t.status));
}

/** Seconds as the command line prints them: "0.3 ms", "1.24 s", "2 min 3 s", "1 h 5 min". */
export function durationText(seconds) {
  if (missing(seconds) || Number.isNaN(seconds)) return '-';
  const s = Math.max(0, seconds);
  if (s < 1) return `${(s * 1000).toFixed(1)} ms`;
  if (s < 120) return `${s.toFixed(2)} s`;
  const whole = Math.round(s);
  const min = Math.floor(whole / 60);
  return min < 60 ? `${min} min ${whole % 60} s` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

export function fmtTime(t) {
  return missing(t) ? '-' : new Date(t * 1000).toLocaleString();
}

/** The time from started to finished; "running" while it runs. */
export function fmtSpan(started, finished, status) {
  if (missing(started)) return '-';
  if (missing(finished)) return status === 'running' ? 'running' : '-';
  return durationText(finished - started);
}

/** A task's or a run's duration: the API's text when it sent one. */
export function shownDuration(t) {
  if (typeof t.duration_text === 'string' && !(missing(t.finished) && t.status === 'running')) return t.duration_text;
  return missing(t.duration) ? fmtSpan(t.started, t.finished, t.status) : durationText(t.duration);
}

/** A value as the page shows it: text as it is, anything else as indented JSON; cut to `limit` by shorten. */
export function preview(value, limit = Infinity) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2) ?? String(value);
  return Number.isFinite(limit) ? shorten(text, limit) : text;
}

/** `text` when it has at most `limit` characters, else its start ending in "...". */
export const shorten = (text, limit) => (text.length <= limit ? text : text.slice(0, Math.max(0, limit - 3)) + '...');

/** The key of a task (a step, or an item of a mapped step) in maps. */
export const taskKey = (step, item) => step + '\u0000' + (missing(item) ? '' : item);
