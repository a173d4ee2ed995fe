// The editor's canvas: steps as nodes placed by the server's layout (or where the user
// dragged them), edges from every kind of dependency, and the pointer and keyboard
// gestures that select, move and connect steps. The editor (editor.js) owns the state `ed`;
// `on` are its actions: select(sel), connect(from, to), say(text), cancelConnect(), markSelection().
import {el, has, isObject, setup, svgEl} from '../dom.js';
import {edgeBand, edgePath, fitInto, nodeShape, routeBand, routePath} from '../draw.js';

const MIN_W = 600, MIN_H = 300; // the canvas of a small flow: room to add steps

export function createCanvas(ed, on) {
  const box = el('div', {class: 'canvas-scroll'});
  const svg = svgEl('svg', {class: 'canvas', width: MIN_W, height: MIN_H, viewBox: `0 0 ${MIN_W} ${MIN_H}`});
  const edgesLayer = svgEl('g', {class: 'edges'});
  const nodesLayer = svgEl('g', {class: 'nodes'});
  const tempLine = svgEl('line', {class: 'temp', visibility: 'hidden'});
  svg.append(svgEl('defs', null, svgEl('marker', {id: 'md-arrow', viewBox: '0 0 10 10', refX: 16, refY: 5,
    markerWidth: 8, markerHeight: 8, markerUnits: 'userSpaceOnUse', orient: 'auto'},
  svgEl('path', {d: 'M 0 0 L 10 5 L 0 10 z'}))), edgesLayer, nodesLayer, tempLine);
  const names = () => Object.keys(ed.doc.steps);
  // drawn whole in its box up to FIT_MAX steps, then panned and zoomed, as the run page's graph;
  // a pan's drag ends in a click that is not a click on the background
  const fitted = fitInto(box, svg, 0, {onPan: () => { ed.dragged = true; }});

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
      const route = routeOf(key, x1, y1, x2, y2);
      g.firstChild.setAttribute('d', route ? routePath(route) : edgePath(x1, y1, x2, y2));
      g.lastChild.setAttribute('d', route ? routeBand(route, 5) : edgeBand(x1, y1, x2, y2, 5));
    }
    edgesLayer.append(frag);
    on.markSelection();
  }

  /** The server's route of an edge, while it still joins where both steps are (no step moved by hand). */
  function routeOf(key, x1, y1, x2, y2) {
    const route = ed.pinned.size ? null : ed.routes.get(key);
    if (!route || route.length < 2) return null;
    const [[ax, ay], [bx, by]] = [route[0], route[route.length - 1]];
    return ax === x1 && ay === y1 && bx === x2 && by === y2 ? route : null;
  }

  /** Keeps the routes of graph `g` (the server's layout), by "from\0to". */
  function setRoutes(g) {
    ed.routes = new Map();
    if (!g || !g.routes) return;
    g.edges.forEach(([a, b], k) => {
      if (g.nodes[a] && g.nodes[b]) ed.routes.set(g.nodes[a].name + '\u0000' + g.nodes[b].name, g.routes[k]);
    });
  }

  function sizeCanvas() {
    let w = MIN_W, h = MIN_H;
    for (const p of ed.pos.values()) {
      w = Math.max(w, p.x + ed.w + 40);
      h = Math.max(h, p.y + ed.h + 40);
    }
    fitted.update(w, h, ed.pos.size);
  }

  /** Marks the selected step or edge, and the step a click-to-connect starts from. */
  function markSelection(step) {
    for (const [name, g] of ed.nodeEls) {
      g.classList.toggle('selected', name === step);
      g.classList.toggle('connecting', name === ed.connectFrom);
    }
    for (const g of edgesLayer.children) {
      const p = g.lastChild;
      g.classList.toggle('selected', !!ed.sel && ed.sel.from === p.getAttribute('data-from') && ed.sel.to === p.getAttribute('data-to'));
    }
  }

  /** Brings step `name` into view when the canvas is panned (a step picked from the list). */
  function reveal(name) {
    const p = ed.pos.get(name);
    if (p) fitted.reveal(p.x, p.y, ed.w, ed.h);
  }

  function markProblems(bad) {
    for (const [name, g] of ed.nodeEls) g.classList.toggle('problem', bad.has(name));
  }

  // ---- pointer and keyboard: select, move nodes, connect ports
  let drag = null; // {mode: 'move'|'connect', name, dx, dy, x0, y0, moved}
  const toSvg = (e) => { // the pointer in the drawing's units, however it is scaled and panned
    const m = svg.getScreenCTM();
    const p = m ? new DOMPoint(e.clientX, e.clientY).matrixTransform(m.inverse()) : {x: e.clientX, y: e.clientY};
    return {x: p.x, y: p.y};
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
    if (e.target.classList.contains('port-out') && ed.connectFrom !== name) on.cancelConnect(); // a new start
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
    if (target) on.connect(d.name, target.getAttribute('data-step'));
  }

  /** A click or Enter on the canvas: a port-out starts a connection, a node ends it or is selected. */
  function activate(target) {
    const edge = target.closest('path.edge');
    if (edge) return on.select({from: edge.getAttribute('data-from'), to: edge.getAttribute('data-to')});
    const g = target.closest('g.node');
    if (!g) return on.select(null);
    const name = g.getAttribute('data-step');
    if (target.closest('circle.port-out') && ed.connectFrom !== name) {
      ed.connectFrom = name;
      on.markSelection();
      return on.say(`Now click the step that should run after ${name} (Esc cancels).`);
    }
    if (ed.connectFrom !== null && ed.connectFrom !== name) {
      const from = ed.connectFrom;
      on.cancelConnect();
      return on.connect(from, name);
    }
    on.select({step: name});
  }

  svg.addEventListener('click', (e) => {
    if (ed.dragged) { ed.dragged = false; return; } // the end of a drag, not a click
    activate(e.target);
  });
  svg.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); activate(e.target); }
    if (e.key === 'Escape') on.cancelConnect();
  });

  return {box, svg, place, setRoutes, syncPositions, depsOf, drawNodes, drawEdges, sizeCanvas, markSelection, markProblems, reveal};
}
