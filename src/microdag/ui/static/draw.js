// SVG drawings of the run page and the editor: the DAG (its nodes, edges along the
// server's routes), a summary per layer for big graphs, and the timeline.
import {cut, missing, svgEl} from './dom.js';
import {COLOURS, WORST_FIRST, colours, durationText, fmtSpan, fmtTime, taskKey} from './present.js';

const LABEL_MAX = 22;        // characters of a node label, ellipsis included
export const TIMELINE_MAX = 2000; // tasks drawn in the timeline
export const LAYERS_MAX = 500; // boxes drawn in layers mode
const ROW_H = 20, GANTT_LABEL_W = 220, GANTT_W = 760;

/** The edge from (x1, y1), a dependency's right middle, to (x2, y2), a dependent's left middle. */
export function edgePath(x1, y1, x2, y2) {
  const c = Math.max(20, (x2 - x1) / 2);
  return `M ${x1} ${y1} C ${x1 + c} ${y1}, ${x2 - c} ${y2}, ${x2} ${y2}`;
}

/** The outline of a band r px above and below edgePath's curve: a target easy to click. */
export function edgeBand(x1, y1, x2, y2, r) {
  const c = Math.max(20, (x2 - x1) / 2);
  return `M ${x1} ${y1 - r} C ${x1 + c} ${y1 - r}, ${x2 - c} ${y2 - r}, ${x2} ${y2 - r} `
    + `L ${x2} ${y2 + r} C ${x2 - c} ${y2 + r}, ${x1 + c} ${y1 + r}, ${x1} ${y1 + r} Z`;
}

/**
 * An SVG path through a route's [x, y] points (the server's layout: from a dependency's
 * right side through the lanes of the layers it crosses to the dependent's left side):
 * straight where two points are level, else a curve with horizontal tangents whose control
 * points stay between its ends' x, so it stays out of the boxes as the route does. `dy`
 * moves it down (a band's edges). The same rule as microdag/_layout.py's smooth_path.
 */
export function routePath(route, dy = 0) {
  let [x0, y0] = route[0];
  const out = [`M ${x0} ${y0 + dy}`];
  for (const [x, y] of route.slice(1)) {
    if (y === y0) out.push(`L ${x} ${y + dy}`);
    else {
      const c = Math.floor((x - x0) / 2);
      out.push(`C ${x0 + c} ${y0 + dy}, ${x - c} ${y + dy}, ${x} ${y + dy}`);
    }
    [x0, y0] = [x, y];
  }
  return out.join(' ');
}

/** The outline of a band r px above and below routePath's curve: a target easy to click. */
export function routeBand(route, r) {
  const back = routePath(route.slice().reverse(), r).replace(/^M/, 'L');
  return `${routePath(route, -r)} ${back} Z`;
}

/** A node's title, box and label at (0, 0); its g is placed with a transform. */
export function nodeShape(g, name, w, h) {
  g.append(
    svgEl('title', null, name),
    svgEl('rect', {width: w, height: h, rx: 5, fill: COLOURS.pending[0], stroke: COLOURS.pending[1]}),
    svgEl('text', {x: 8, y: h / 2 + 4}, cut(name, LABEL_MAX)),
  );
}

export function paintNode(g, status) {
  const [fill, stroke] = colours(status);
  g.setAttribute('data-status', status);
  const rect = g.querySelector('rect');
  rect.setAttribute('fill', fill);
  rect.setAttribute('stroke', stroke);
  const by = g.getAttribute('data-added-by');
  g.querySelector('title').textContent = `${g.getAttribute('data-step')} (${status})` + (by ? `, added by ${by}` : '');
}

/** A "full" graph as svg.dag; returns it with a Map step -> g.node for live recolouring. */
export function drawDag(graph) {
  const w = graph.node_w, h = graph.node_h;
  const svg = svgEl('svg', {class: 'dag', width: graph.width, height: graph.height,
    viewBox: `0 0 ${graph.width} ${graph.height}`});
  const frag = document.createDocumentFragment();
  const nodes = new Map();
  graph.edges.forEach(([a, b], k) => {
    const from = graph.nodes[a], to = graph.nodes[b];
    if (!from || !to) return;
    const route = graph.routes && graph.routes[k];
    frag.append(svgEl('path', {class: 'edge', 'data-from': from.name, 'data-to': to.name,
      d: route && route.length >= 2 ? routePath(route) : edgePath(from.x + w, from.y + h / 2, to.x, to.y + h / 2)}));
  });
  for (const n of graph.nodes) {
    const g = svgEl('g', {class: n.added_by ? 'node added' : 'node', 'data-step': n.name, tabindex: 0,
      transform: `translate(${n.x} ${n.y})`});
    if (n.added_by) g.setAttribute('data-added-by', n.added_by); // a step a step added: dashed
    nodeShape(g, n.name, w, h);
    paintNode(g, n.status || 'pending');
    nodes.set(n.name, g);
    frag.append(g);
  }
  svg.append(frag);
  return {svg, nodes};
}

/** A "layers" graph: one g.layer box per layer with its step count and counts per status. */
export function drawLayers(graph) {
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
export function drawTimeline(tasks, attempts, t0, end) {
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
      svgEl('text', {class: 'tick', x, y: 12, 'text-anchor': 'middle'}, tick ? durationText(tick) : '0'));
  }
  const [failFill, failStroke] = COLOURS.failed;
  rows.forEach((t, k) => {
    const y = 24 + k * ROW_H;
    const label = missing(t.item) ? t.step : `${t.step}[${t.item_label ?? t.item}]`;
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

/** Graphs of up to this many steps are drawn whole in their box; bigger ones can be panned and zoomed. */
export const FIT_MAX = 30;
const MIN_SCALE = 0.35;      // a big graph is not drawn smaller than this at first (then zoom out)

/** The ResizeObserver of a box a drawing was fitted into (one per box: a redraw replaces it). */
const observers = new WeakMap();

/**
 * Puts svg (a drawing with a viewBox) in box: scaled down to the box's width (never up),
 * whole when it has at most FIT_MAX steps; a bigger one at MIN_SCALE at least, with
 * buttons to zoom and fit, Ctrl+wheel to zoom and a drag on the background to pan.
 * The view follows the box's width as it changes (a scrollbar, the window).
 * Returns {update(width, height, steps)} for a drawing that changes (the editor's canvas:
 * steps added, moved, removed), and options.onPan() is called when a drag pans the view
 * (so that the click that ends it is not taken for a click on the background).
 */
export function fitInto(box, svg, steps, options = {}) {
  let [, , W, H] = svg.getAttribute('viewBox').split(' ').map(Number);
  box.classList.add('fit-box');
  let panning = null; // (neither yet: the first update sets one)
  let view = {x: 0, y: 0, scale: 1};
  const apply = () => {
    const width = box.clientWidth || W;
    const height = Math.max(60, Math.min(H * view.scale, Math.max(240, window.innerHeight * 0.6)));
    svg.setAttribute('width', '100%');
    svg.setAttribute('height', height);
    svg.setAttribute('viewBox', `${view.x} ${view.y} ${width / view.scale} ${height / view.scale}`);
  };
  let fitted = false; // fitted to the box's width once it had one (a box not in the page yet has none)
  const fit = () => {
    fitted = box.clientWidth > 0;
    view = {x: 0, y: 0, scale: Math.min(1, Math.max(MIN_SCALE, (box.clientWidth || W) / W))};
    apply();
  };
  const zoom = (factor, cx, cy) => { // keeps the drawing's point under (cx, cy) in place
    const scale = Math.min(4, Math.max(0.05, view.scale * factor));
    view.x += cx / view.scale - cx / scale;
    view.y += cy / view.scale - cy / scale;
    view.scale = scale;
    apply();
  };
  const button = (label, title, fn) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.title = title;
    b.addEventListener('click', fn);
    return b;
  };
  const tools = document.createElement('div');
  tools.className = 'zoom-tools';
  tools.append(button('+', 'Zoom in', () => zoom(1.25, svg.clientWidth / 2, svg.clientHeight / 2)),
    button('\u2212', 'Zoom out', () => zoom(0.8, svg.clientWidth / 2, svg.clientHeight / 2)),
    button('Fit', 'Show the whole graph', () => {
      view = {x: 0, y: 0, scale: Math.min(1, (box.clientWidth || W) / W, Math.max(240, window.innerHeight * 0.6) / H)};
      apply();
    }));
  svg.addEventListener('wheel', (e) => {
    if (!panning || (!e.ctrlKey && !e.metaKey)) return; // a plain wheel scrolls the page
    e.preventDefault();
    const r = svg.getBoundingClientRect();
    zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
  }, {passive: false});
  let pan = null; // a drag on the background: it pans once it has moved a few pixels
  svg.addEventListener('pointerdown', (e) => {
    if (!panning || e.button !== 0 || e.target.closest('g.node, path.edge')) return;
    pan = {x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, id: e.pointerId, moved: false};
  });
  svg.addEventListener('pointermove', (e) => {
    if (!pan) return;
    if (!pan.moved) {
      if (Math.hypot(e.clientX - pan.x, e.clientY - pan.y) < 4) return;
      pan.moved = true;
      svg.setPointerCapture(pan.id); // (only now: a click that does not move keeps its target)
      if (options.onPan) options.onPan();
    }
    view.x = pan.vx - (e.clientX - pan.x) / view.scale;
    view.y = pan.vy - (e.clientY - pan.y) / view.scale;
    apply();
  });
  const stop = () => { pan = null; };
  svg.addEventListener('pointerup', stop);
  svg.addEventListener('pointercancel', stop);
  box.append(svg);

  /** Pans the view, when it is panned, so that the box (x, y, w, h) of the drawing is in it. */
  function reveal(x, y, w, h) {
    if (!panning) return;
    const [, , vw, vh] = svg.getAttribute('viewBox').split(' ').map(Number);
    if (x >= view.x && y >= view.y && x + w <= view.x + vw && y + h <= view.y + vh) return;
    view.x = Math.max(0, x + w / 2 - vw / 2);
    view.y = Math.max(0, y + h / 2 - vh / 2);
    apply();
  }

  /** The drawing's size and step count: whole and scaled to fit, or panned and zoomed. */
  function update(width, height, count) {
    [W, H] = [width, height];
    const big = count > FIT_MAX;
    if (big !== panning) {
      panning = big;
      svg.classList.toggle('fit', !big); // CSS: max-width 100%, height from the viewBox's ratio
      svg.classList.toggle('pannable', big);
      box.classList.toggle('panning', big); // the drawing moves inside the box: no scrollbars
      if (big) {
        box.prepend(tools);
        fit();
        return;
      }
      tools.remove();
    }
    if (panning) apply();
    else {
      svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
      svg.setAttribute('width', W);
      svg.setAttribute('height', H);
    }
  }

  update(W, H, steps);
  if (observers.has(box)) observers.get(box).disconnect();
  let boxWidth = box.clientWidth;
  const observer = new ResizeObserver(() => {
    if (box.clientWidth === boxWidth) return;
    boxWidth = box.clientWidth;
    if (panning && !fitted) fit();
    else if (panning) apply();
  });
  observer.observe(box);
  observers.set(box, observer);
  return {update, reveal};
}
