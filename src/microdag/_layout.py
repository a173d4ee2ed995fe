"""Where a DAG is drawn: each node's box and the path of each edge.

The HTML report, the UI's run page and its flow editor draw with
:func:`layout` (layers run left to right):

- **Layers.** A node's layer is the longest path to it from a root, computed
  in one Kahn pass over the edges (iterative, so a chain of any depth is
  fine).  Nodes that the pass never reaches (on a cycle, which a validated
  flow never has) keep the layer found so far.
- **Long edges.** An edge that spans more than one layer gets a virtual node
  in each layer it crosses (Sugiyama's layered drawing): a lane ``LANE``
  pixels high, between the boxes of that layer.  At most ``MAX_VIRTUAL`` of
  them in a drawing; an edge past that budget is drawn straight.
- **Order.** Inside a layer, nodes (virtual ones too) start in definition
  order and are reordered by barycenter sweeps: downward by the mean position
  of their dependencies, upward by that of their dependents, positions
  centred on each layer so layers of different sizes compare.  A sweep is one
  pass over the edges plus a sort per layer.
- **Routes.** Each edge's points: from its dependency's right side, through
  the lane of each layer it crosses (in and out at the layer's two sides), to
  its dependent's left side.  Between layers there are no boxes, and inside a
  layer a lane is a band no box overlaps, so no route passes through a box;
  a curve drawn through the points with horizontal tangents (each piece's
  control points between its two ends' x) keeps that property.
"""

__all__ = ["layout", "layers", "smooth_path", "NODE_W", "NODE_H", "LANE"]

#: Node size, gaps between layers and between nodes.
NODE_W, NODE_H, COL_GAP, ROW_GAP = 160, 28, 70, 12
#: The height of a long edge's lane in a layer it crosses, and the gap beside it.
LANE, _LANE_GAP = 8, 4
#: Virtual nodes in one drawing at most (a graph of 1,000 steps with many long
#: edges stays fast); edges past the budget are drawn straight.
MAX_VIRTUAL = 20_000


def _layers(deps: "list[list[int]]") -> "tuple[list[int], list[list[int]]]":
    """Each node's layer (longest path from a root) and each node's dependents."""
    n = len(deps)
    dependents: list[list[int]] = [[] for _ in range(n)]
    indegree = [len(ds) for ds in deps]
    for v, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(v)
    layer = [0] * n
    queue = [v for v in range(n) if indegree[v] == 0]
    for v in queue:  # the list grows while it is walked: a Kahn pass
        lv = layer[v] + 1
        for w in dependents[v]:
            if layer[w] < lv:
                layer[w] = lv
            indegree[w] -= 1
            if indegree[w] == 0:
                queue.append(w)
    return layer, dependents


def layers(deps: "list[list[int]]") -> "list[int]":
    """Each node's layer: the longest path to it from a root."""
    return _layers(deps)[0]


def _order(
    layer: "list[int]", deps: "list[list[int]]", dependents: "list[list[int]]", sweeps: int = 4
) -> "list[list[int]]":
    """Nodes per layer, ordered by alternating barycenter sweeps."""
    rows: list[list[int]] = [[] for _ in range(max(layer, default=-1) + 1)]
    for v, lv in enumerate(layer):
        rows[lv].append(v)
    pos = [0.0] * len(layer)

    def place(row: "list[int]") -> None:
        mid = (len(row) - 1) / 2
        for k, v in enumerate(row):
            pos[v] = k - mid

    for row in rows:
        place(row)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        links = deps if down else dependents
        for row in rows if down else reversed(rows):
            key: dict[int, float] = {}
            for v in row:
                ws = links[v]
                if len(ws) == 1:  # (every virtual node: one dependency, one dependent)
                    key[v] = pos[ws[0]]
                else:
                    key[v] = sum(map(pos.__getitem__, ws)) / len(ws) if ws else pos[v]
            row.sort(key=key.__getitem__)
            place(row)
    return rows


def _with_lanes(
    deps: "list[list[int]]", layer: "list[int]"
) -> "tuple[list[list[int]], list[list[int]], list[int], list[list[int]]]":
    """The graph with a virtual node in each layer a long edge crosses: its
    dependencies, dependents and layers (real nodes first, then the virtual
    ones), and for each edge (in the order of ``deps``) the virtual nodes it
    passes through."""
    ext_deps = [list(ds) for ds in deps]
    ext_layer = list(layer)
    lanes: list[list[int]] = []
    budget = MAX_VIRTUAL
    for v, ds in enumerate(deps):
        for k, d in enumerate(ds):
            span = layer[v] - layer[d] - 1
            if span <= 0 or span > budget:
                lanes.append([])
                continue
            budget -= span
            first = len(ext_layer)
            chain = list(range(first, first + span))
            ext_layer.extend(range(layer[d] + 1, layer[v]))
            ext_deps.append([d])
            ext_deps.extend([u - 1] for u in chain[1:])
            ext_deps[v][k] = chain[-1]
            lanes.append(chain)
    dependents: list[list[int]] = [[] for _ in ext_layer]
    for v, ds in enumerate(ext_deps):
        for d in ds:
            dependents[d].append(v)
    return ext_deps, dependents, ext_layer, lanes


def layout(
    n: int, raw: "list[list[int]]"
) -> "tuple[list[list[int]], list[int], list[int], int, int, list[list[list[int]]]]":
    """Where the DAG of ``n`` nodes with dependencies ``raw`` is drawn: the
    cleaned dependencies (in range, no self-loops, no duplicates), each node's
    top-left corner (x, y), the drawing's width and height, for nodes of
    ``NODE_W`` x ``NODE_H``, and each edge's route: its ``[x, y]`` points, the
    edges taken as ``(d, v) for v, ds in enumerate(deps) for d in ds``."""
    deps = [list(dict.fromkeys(d for d in ds if 0 <= d < n and d != v)) for v, ds in enumerate(raw)]
    layer = _layers(deps)[0]
    ext_deps, dependents, ext_layer, lanes = _with_lanes(deps, layer)
    rows = _order(ext_layer, ext_deps, dependents)
    step = NODE_W + COL_GAP
    tops = [0] * len(ext_layer)  # each node's top within its layer
    sizes = []
    for row in rows:
        y, real = 0, None
        for v in row:
            box = v < n
            if real is not None:
                y += ROW_GAP if box and real else _LANE_GAP
            tops[v] = y
            y += NODE_H if box else LANE
            real = box
        sizes.append(y)
    tallest = max(sizes, default=0)
    ys = [0] * len(ext_layer)
    for row, size in zip(rows, sizes):
        top = int(10 + (tallest - size) / 2)
        for v in row:
            ys[v] = top + tops[v]
    xs = [10 + lv * step for lv in layer]
    half, mid = NODE_H // 2, LANE // 2
    routes: list[list[list[int]]] = []
    it = iter(lanes)
    for v, ds in enumerate(deps):
        for d in ds:
            route = [[xs[d] + NODE_W, ys[d] + half]]
            for u in next(it):
                x, y = 10 + ext_layer[u] * step, ys[u] + mid
                route += [[x, y], [x + NODE_W, y]]
            route.append([xs[v], ys[v] + half])
            routes.append(route)
    width = max(20, 20 + len(rows) * step - COL_GAP)
    height = max(20, 20 + tallest)
    return deps, xs, ys[:n], width, height, routes


def smooth_path(route: "list[list[int]]") -> str:
    """An SVG path through a route's points: straight where two points are level
    (a lane), else a cubic curve with horizontal tangents at both ends (between
    layers), whose control points stay between its ends' x."""
    (x0, y0), *rest = route
    out = [f"M{x0} {y0}"]
    for x, y in rest:
        if y == y0:
            out.append(f"L{x} {y}")
        else:
            c = (x - x0) // 2
            out.append(f"C{x0 + c} {y0} {x - c} {y} {x} {y}")
        x0, y0 = x, y
    return "".join(out)
