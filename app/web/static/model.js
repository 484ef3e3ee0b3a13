// The document model of PROTOCOL.md section 2 and the op semantics of section 3, as
// plain JSON objects: {id, title, v, layers: [{id, name, visible, locked, opacity,
// elements: [{id, shape, props}]}]}. Pure: no DOM, no network.
//
// applyEvent() applies a committed event op exactly as the server's app/domain/apply.py
// does (no checks: the server decided it). applyPending() applies one of our own ops
// that the server has not answered yet, with the conflict checks of section 3, so the
// optimistic view is the server's most likely answer; it returns false (and changes
// nothing) when the server would refuse it.

export class Conflict extends Error {}

export function clone(state) {
  return structuredClone(state);
}

export function emptyState(id, title = "") {
  return { id, title, v: 0, layers: [] };
}

function layerIndex(state, id) {
  return state.layers.findIndex((l) => l.id === id);
}

export function findElement(state, id) {
  for (let li = 0; li < state.layers.length; li++) {
    const els = state.layers[li].elements;
    for (let p = 0; p < els.length; p++) {
      if (els[p].id === id) return { li, p, layer: state.layers[li], element: els[p] };
    }
  }
  return null;
}

function insertAt(list, item, index) {
  const at = index == null ? list.length : Math.min(index, list.length);
  list.splice(at, 0, item);
}

// -- the event ops: mechanical, as the server applies them --------------------------------

const APPLY = {
  "doc.create": (s, op) => { s.title = op.title; },
  "doc.rename": (s, op) => { s.title = op.title; },
  "layer.add": (s, op) => {
    const layer = {
      id: op.layer, name: op.name, visible: op.visible ?? true, locked: op.locked ?? false,
      opacity: op.opacity ?? 1, elements: [],
    };
    insertAt(s.layers, layer, op.index);
  },
  "layer.update": (s, op) => {
    const layer = s.layers[mustLayer(s, op.layer)];
    for (const key of ["name", "visible", "locked", "opacity"]) {
      if (key in op.set) layer[key] = op.set[key];
    }
  },
  "layer.move": (s, op) => {
    const [layer] = s.layers.splice(mustLayer(s, op.layer), 1);
    insertAt(s.layers, layer, op.index);
  },
  "layer.remove": (s, op) => { s.layers.splice(mustLayer(s, op.layer), 1); },
  "element.add": (s, op) => {
    const layer = s.layers[mustLayer(s, op.layer)];
    insertAt(layer.elements, { id: op.element, shape: op.shape, props: { ...op.props } }, op.index);
  },
  "element.update": (s, op) => {
    const { element } = mustElement(s, op.element);
    const props = { ...element.props };
    for (const [k, v] of Object.entries(op.set)) {
      if (v === null) delete props[k];
      else props[k] = v;
    }
    element.props = props;
  },
  "element.move": (s, op) => {
    const { li, p } = mustElement(s, op.element);
    const [element] = s.layers[li].elements.splice(p, 1);
    const target = op.layer == null ? li : mustLayer(s, op.layer);
    insertAt(s.layers[target].elements, element, op.index);
  },
  "element.remove": (s, op) => {
    const { li, p } = mustElement(s, op.element);
    s.layers[li].elements.splice(p, 1);
  },
};
for (const kind of ["batch", "undo", "redo", "restore"]) {
  APPLY[kind] = (s, op) => { for (const sub of op.ops || []) applyOp(s, sub); };
}

function mustLayer(s, id) {
  const li = layerIndex(s, id);
  if (li < 0) throw new Conflict(`layer ${id} is gone`);
  return li;
}

function mustElement(s, id) {
  const found = findElement(s, id);
  if (!found) throw new Conflict(`element ${id} is gone`);
  return found;
}

function applyOp(state, op) {
  const fn = APPLY[op.kind];
  if (!fn) throw new Error(`unknown op kind ${op.kind}`);
  fn(state, op);
}

// Apply committed event `v` (mutates `state`, which must be at v - 1).
export function applyEvent(state, v, op) {
  if (v !== state.v + 1) throw new Error(`event v${v} cannot follow v${state.v}`);
  applyOp(state, op);
  state.v = v;
}

// -- our own ops, not yet answered: checked as section 3 says ----------------------------

function check(state, op) {
  const layerOf = (id) => state.layers[layerIndex(state, id)];
  switch (op.kind) {
    case "layer.add":
      if (layerOf(op.layer)) throw new Conflict("the layer id exists");
      return;
    case "layer.update": case "layer.move": case "layer.remove":
      if (!layerOf(op.layer)) throw new Conflict("the layer is gone");
      return;
    case "element.add": {
      if (findElement(state, op.element)) throw new Conflict("the element id exists");
      const layer = layerOf(op.layer);
      if (!layer) throw new Conflict("the layer is gone");
      if (layer.locked) throw new Conflict("the layer is locked");
      return;
    }
    case "element.update": case "element.remove": {
      const found = findElement(state, op.element);
      if (!found) throw new Conflict("the element is gone");
      if (found.layer.locked) throw new Conflict("its layer is locked");
      return;
    }
    case "element.move": {
      const found = findElement(state, op.element);
      if (!found) throw new Conflict("the element is gone");
      if (found.layer.locked) throw new Conflict("its layer is locked");
      if (op.layer != null) {
        const target = layerOf(op.layer);
        if (!target) throw new Conflict("the target layer is gone");
        if (target.locked) throw new Conflict("the target layer is locked");
      }
      return;
    }
    default:
      return;
  }
}

// Apply our own unanswered op to `state` (mutated) if the server would accept it.
// undo and redo are not predicted: their effect comes with their event.
export function applyPending(state, op) {
  if (op.kind === "undo" || op.kind === "redo") return true;
  try {
    if (op.kind === "batch") {
      const scratch = clone(state);
      for (const sub of op.ops) {
        check(scratch, sub);
        applyOp(scratch, sub);
      }
      Object.assign(state, scratch);
      return true;
    }
    check(state, op);
    applyOp(state, op);
    return true;
  } catch (err) {
    if (err instanceof Conflict) return false;
    throw err;
  }
}

// -- geometry ----------------------------------------------------------------------------

let measureCtx = null;
function measure(text, size) {
  if (!measureCtx) measureCtx = new OffscreenCanvas(1, 1).getContext("2d");
  measureCtx.font = `${size}px sans-serif`;
  let width = 0;
  for (const line of text.split("\n")) width = Math.max(width, measureCtx.measureText(line).width);
  return width;
}

// The element's box in document coordinates: {x, y, w, h}.
export function bounds(element) {
  const p = element.props;
  const x = p.x ?? 0;
  const y = p.y ?? 0;
  switch (element.shape) {
    case "rect": case "ellipse": case "image":
      return { x, y, w: p.w ?? 0, h: p.h ?? 0 };
    case "line": {
      const x2 = p.x2 ?? x;
      const y2 = p.y2 ?? y;
      return { x: Math.min(x, x2), y: Math.min(y, y2), w: Math.abs(x2 - x), h: Math.abs(y2 - y) };
    }
    case "text": {
      const size = p.size ?? 24;
      const lines = (p.text ?? "").split("\n").length;
      return { x, y, w: measure(p.text ?? "", size), h: lines * size * 1.2 };
    }
    case "stroke": {
      let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
      for (const [px, py] of p.points ?? []) {
        minX = Math.min(minX, px); minY = Math.min(minY, py);
        maxX = Math.max(maxX, px); maxY = Math.max(maxY, py);
      }
      if (minX === Infinity) return { x, y, w: 0, h: 0 };
      return { x: minX + x, y: minY + y, w: maxX - minX, h: maxY - minY };
    }
    default:
      return { x, y, w: 0, h: 0 };
  }
}

function distToSegment(px, py, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay;
  const len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len)) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

// Does the point (document coordinates) touch the element, with `slop` of tolerance?
export function hits(element, px, py, slop) {
  const p = element.props;
  const width = (p.width ?? 1) / 2;
  switch (element.shape) {
    case "line":
      return distToSegment(px, py, p.x ?? 0, p.y ?? 0, p.x2 ?? p.x ?? 0, p.y2 ?? p.y ?? 0) <= slop + width;
    case "stroke": {
      const pts = p.points ?? [];
      const ox = p.x ?? 0, oy = p.y ?? 0;
      if (pts.length === 1) return Math.hypot(px - pts[0][0] - ox, py - pts[0][1] - oy) <= slop + width;
      for (let i = 1; i < pts.length; i++) {
        const d = distToSegment(px, py, pts[i - 1][0] + ox, pts[i - 1][1] + oy, pts[i][0] + ox, pts[i][1] + oy);
        if (d <= slop + width) return true;
      }
      return false;
    }
    case "ellipse": {
      const b = bounds(element);
      const rx = b.w / 2 + slop, ry = b.h / 2 + slop;
      const nx = (px - b.x - b.w / 2) / rx, ny = (py - b.y - b.h / 2) / ry;
      return nx * nx + ny * ny <= 1;
    }
    default: {
      const b = bounds(element);
      return px >= b.x - slop && px <= b.x + b.w + slop && py >= b.y - slop && py <= b.y + b.h + slop;
    }
  }
}

// The props that move an element by (dx, dy).
export function movedProps(element, dx, dy) {
  const p = element.props;
  const r = (n) => Math.round(n * 100) / 100;
  if (element.shape === "line") {
    return { x: r((p.x ?? 0) + dx), y: r((p.y ?? 0) + dy), x2: r((p.x2 ?? p.x ?? 0) + dx), y2: r((p.y2 ?? p.y ?? 0) + dy) };
  }
  return { x: r((p.x ?? 0) + dx), y: r((p.y ?? 0) + dy) };
}

// The props that resize an element so that its bottom-right corner is at (cx, cy).
// Strokes are not resized (their points are the drawing); null when nothing applies.
export function resizedProps(element, cx, cy) {
  const p = element.props;
  const r = (n) => Math.round(n * 100) / 100;
  switch (element.shape) {
    case "rect": case "ellipse": case "image":
      return { w: r(Math.max(1, cx - (p.x ?? 0))), h: r(Math.max(1, cy - (p.y ?? 0))) };
    case "line":
      return { x2: r(cx), y2: r(cy) };
    case "text": {
      const b = bounds(element);
      const lines = (p.text ?? "").split("\n").length;
      const size = Math.max(4, Math.min(1000, (cy - b.y) / (1.2 * lines)));
      return { size: r(size) };
    }
    default:
      return null;
  }
}

// Elements in paint order with their layer, for hit tests (top first).
export function* topDown(state) {
  for (let li = state.layers.length - 1; li >= 0; li--) {
    const layer = state.layers[li];
    for (let p = layer.elements.length - 1; p >= 0; p--) yield [layer, layer.elements[p]];
  }
}
