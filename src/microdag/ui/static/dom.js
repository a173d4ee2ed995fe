// DOM helpers. Everything that comes from the API is put in the page as text
// (textContent, text nodes, setAttribute), never parsed as HTML.

export const SVG_NS = 'http://www.w3.org/2000/svg';

export const missing = (v) => v === null || v === undefined;
export const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
export const has = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);
export const parseJson = (text) => { try { return JSON.parse(text); } catch { return null; } };
export const cut = (text, max) => (text.length <= max ? text : text.slice(0, max - 1) + '\u2026');

/** Sets attributes, listeners (`onclick`...) and text on an element; null/false skip. */
export function setup(node, attrs, kids) {
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

export const el = (tag, attrs, ...kids) => setup(document.createElement(tag), attrs, kids);
export const svgEl = (tag, attrs, ...kids) => setup(document.createElementNS(SVG_NS, tag), attrs, kids);
export const badge = (status, id) => el('span', {class: 'badge', 'data-status': status, id}, status);

/** Shows an error (ApiError, Error or text) in the #error banner. */
export function showError(err) {
  const box = document.getElementById('error');
  box.querySelector('.msg').textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

export function clearError() {
  const box = document.getElementById('error');
  box.hidden = true;
  box.querySelector('.msg').textContent = '';
}

/** Fills ul#problems (and its "none" note) with clickable problem messages. */
export function renderProblems(ul, none, problems, onStep) {
  ul.textContent = '';
  for (const p of problems) {
    const where = !missing(p.line) && p.field === 'python' ? `${p.step}, line ${p.line}: ` : '';
    const li = el('li', {'data-step': p.step ?? null, 'data-key': p.key ?? p.field ?? null,
      'data-line': p.line ?? null}, where + p.message);
    if (!missing(p.step) && onStep) {
      li.classList.add('link');
      li.addEventListener('click', () => onStep(p.step, p));
    }
    ul.append(li);
  }
  none.hidden = problems.length > 0;
}
