// The code editor of microdag's UI: CodeMirror 6 with its Python language,
// bundled by build.sh into ../static/vendor/codemirror.js (one ES module).
//
//   import { createPythonEditor } from "/static/vendor/codemirror.js";
//   const editor = createPythonEditor(parent, {doc, firstLine, onChange, onRun, onSave, label});
//   editor.setProblems([{line: 2, col: 4, message: "..."}]);
//
// Lines given to setProblems count from 1 within the code (the numbers shown in
// the gutter start at firstLine); col counts from 0.  The UI's Content-Security-Policy
// allows no inline <style>: CodeMirror's styles go into one <style> element that
// carries the page's nonce, read from <meta name="csp-nonce" content="...">.

import { EditorState, Prec } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, drawSelection, rectangularSelection, crosshairCursor,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  bracketMatching, foldGutter, foldKeymap, indentOnInput, indentUnit, syntaxHighlighting, defaultHighlightStyle,
} from "@codemirror/language";
import { python } from "@codemirror/lang-python";
import { highlightSelectionMatches, search, searchKeymap } from "@codemirror/search";
import {
  autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap,
} from "@codemirror/autocomplete";
import { lintGutter, lintKeymap, setDiagnostics } from "@codemirror/lint";

/** The page's CSP nonce for style elements, or "" when it has none. */
function pageNonce() {
  const meta = document.querySelector('meta[name="csp-nonce"]');
  return meta ? meta.getAttribute("content") || "" : "";
}

/** CodeMirror's diagnostics for problems given by line (1-based, within the code) and col (0-based). */
function diagnostics(doc, problems) {
  const found = [];
  for (const problem of problems || []) {
    const number = Math.min(Math.max(1, Math.floor(Number(problem.line) || 1)), doc.lines);
    const line = doc.line(number);
    const col = Math.min(Math.max(0, Math.floor(Number(problem.col) || 0)), line.length);
    const from = line.from + col;
    // From the column to the end of the line; a mark on an empty rest covers one character when there is one.
    const to = line.to > from ? line.to : Math.min(from + 1, doc.length);
    const severity = ["error", "warning", "info", "hint"].includes(problem.severity) ? problem.severity : "error";
    found.push({ from, to, severity, message: String(problem.message ?? "") });
  }
  return found;
}

/**
 * A Python editor in `parent`. Options: doc, readOnly, firstLine (the gutter's first number),
 * onChange(text) (after each edit by the user), onRun() (Ctrl/Cmd-Enter), onSave() (Ctrl/Cmd-S),
 * label (the aria-label), nonce (the CSP nonce; the page's meta csp-nonce when not given).
 */
export function createPythonEditor(parent, options = {}) {
  const firstLine = Number.isInteger(options.firstLine) ? options.firstLine : 1;
  const nonce = options.nonce ?? pageNonce();
  let quiet = false; // true while setValue replaces the text: no onChange for it
  const own = [];
  if (options.onRun) own.push({ key: "Mod-Enter", run: () => { options.onRun(); return true; } });
  if (options.onSave) own.push({ key: "Mod-s", run: () => { options.onSave(); return true; }, preventDefault: true });
  const extensions = [
    lineNumbers({ formatNumber: (n) => String(n + firstLine - 1) }),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    foldGutter(),
    lintGutter(),
    drawSelection(),
    EditorState.allowMultipleSelections.of(true),
    indentOnInput(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    bracketMatching(),
    closeBrackets(),
    autocompletion(),
    rectangularSelection(),
    crosshairCursor(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    search({ top: true }),
    python(),
    indentUnit.of("    "), // PEP 8's four spaces
    Prec.highest(keymap.of(own)),
    keymap.of([
      ...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap,
      ...foldKeymap, ...completionKeymap, ...lintKeymap, indentWithTab,
    ]),
    EditorView.contentAttributes.of({ "aria-label": options.label || "Python code" }),
    EditorView.updateListener.of((update) => {
      if (update.docChanged && !quiet && options.onChange) options.onChange(update.state.doc.toString());
    }),
  ];
  if (nonce) extensions.push(EditorView.cspNonce.of(nonce));
  if (options.readOnly) extensions.push(EditorState.readOnly.of(true));
  const view = new EditorView({ doc: options.doc || "", extensions, parent });
  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      quiet = true;
      try {
        view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: String(text ?? "") } });
      } finally {
        quiet = false;
      }
    },
    setProblems(list) {
      view.dispatch(setDiagnostics(view.state, diagnostics(view.state.doc, list)));
    },
    focus: () => view.focus(),
    destroy: () => view.destroy(),
  };
}

export { EditorView };
