// The editor: the canvas, its tools (pen with pressure, rect, ellipse, line, text,
// select/move/resize/delete, pan and zoom), keyboard shortcuts, and the overlays of the
// peers (cursors with names, their strokes and shapes while they draw, their selection).

import { bounds, findElement, hits, movedProps, resizedProps, topDown } from "./model.js";
import { drawCursor, drawDocument, drawDraft, drawSelection, pixelHash } from "./render.js";
import { newId } from "./session.js";

const PALETTE = ["#e11d48", "#2563eb", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
export const FIRST_LAYER = "layer-1";
const MAX_DRAFT_POINTS = 80; // a draft stroke in presence stays well under 2 KiB

export function colorOf(user) {
  let h = 0;
  for (const ch of user) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
  return PALETTE[Math.abs(h) % PALETTE.length];
}

const r2 = (n) => Math.round(n * 100) / 100;

function decimate(points, max) {
  if (points.length <= max) return points;
  const out = [];
  for (let i = 0; i < max - 1; i++) out.push(points[Math.floor((i * (points.length - 1)) / (max - 1))]);
  out.push(points[points.length - 1]);
  return out;
}

export class Editor {
  constructor({ session, canvas, stage, notify, token, name }) {
    this.session = session;
    this.canvas = canvas;
    this.stage = stage;
    this.notify = notify;
    this.token = token;
    this.name = name;
    this.ctx = canvas.getContext("2d");
    this.view = { x: 0, y: 0, zoom: 1 };
    this.tool = "pen";
    this.currentLayer = null;
    this.selection = new Set();
    this.gesture = null; // the pointer gesture in progress
    this.cursor = null; // our pointer in document coordinates
    this.preview = null; // a past state shown instead of the live one (history)
    this.spaceDown = false;
    this.frame = 0;
    this.listeners = [];
    this.textAt = null;
    this.style = { color: "#1f2937", fill: null, width: 4 };

    this.resize = () => this.fit();
    this.observer = new ResizeObserver(this.resize);
    this.observer.observe(stage);
    this.on(canvas, "pointerdown", (e) => this.down(e));
    this.on(canvas, "pointermove", (e) => this.move(e));
    this.on(canvas, "pointerup", (e) => this.up(e));
    this.on(canvas, "pointercancel", (e) => this.up(e));
    this.on(canvas, "pointerleave", () => { this.cursor = null; this.sendPresence(); this.redraw(); });
    this.on(canvas, "wheel", (e) => this.wheel(e), { passive: false });
    this.on(window, "keydown", (e) => this.key(e, true));
    this.on(window, "keyup", (e) => this.key(e, false));
    for (const kind of ["change", "presence"]) {
      this.on(session, kind, () => { this.pruneSelection(); this.redraw(); });
    }
    this.fit();
  }

  on(target, type, fn, options) {
    target.addEventListener(type, fn, options);
    this.listeners.push([target, type, fn, options]);
  }

  destroy() {
    this.observer.disconnect();
    for (const [target, type, fn, options] of this.listeners) target.removeEventListener(type, fn, options);
    cancelAnimationFrame(this.frame);
  }

  get state() {
    return this.preview ?? this.session.view;
  }

  editable() {
    return this.session.canEdit() && !this.preview;
  }

  // -- view --------------------------------------------------------------------------------

  fit() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.stage.clientWidth;
    const h = this.stage.clientHeight;
    this.canvas.width = Math.max(1, Math.round(w * dpr));
    this.canvas.height = Math.max(1, Math.round(h * dpr));
    this.size = { w, h, dpr };
    this.redraw(true);
  }

  toDoc(e) {
    const rect = this.canvas.getBoundingClientRect();
    return {
      x: (e.clientX - rect.left) / this.view.zoom + this.view.x,
      y: (e.clientY - rect.top) / this.view.zoom + this.view.y,
    };
  }

  zoomAt(factor, sx, sy) {
    const zoom = Math.min(8, Math.max(0.1, this.view.zoom * factor));
    const wx = sx / this.view.zoom + this.view.x;
    const wy = sy / this.view.zoom + this.view.y;
    this.view = { zoom, x: wx - sx / zoom, y: wy - sy / zoom };
    this.dispatchView();
    this.redraw();
  }

  resetView() {
    this.view = { x: 0, y: 0, zoom: 1 };
    this.dispatchView();
    this.redraw();
  }

  dispatchView() {
    const label = document.getElementById("zoom-level");
    if (label) label.textContent = `${Math.round(this.view.zoom * 100)}%`;
  }

  wheel(e) {
    e.preventDefault();
    const rect = this.canvas.getBoundingClientRect();
    if (e.ctrlKey || e.metaKey || !e.shiftKey) {
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
    } else {
      this.view.x += e.deltaX / this.view.zoom + e.deltaY / this.view.zoom;
      this.redraw();
    }
  }

  setTool(tool) {
    this.finishText();
    this.tool = tool;
    this.stage.dataset.tool = tool;
    if (tool !== "select") this.selection.clear();
    this.redraw();
  }

  // -- layers ------------------------------------------------------------------------------

  // The layer new shapes go to: the current one if it is still there, visible and
  // unlocked; else the top such layer; else a new layer is made.
  targetLayer() {
    const state = this.session.view;
    const usable = (l) => l && l.visible && !l.locked;
    let layer = state.layers.find((l) => l.id === this.currentLayer);
    if (!usable(layer)) layer = [...state.layers].reverse().find(usable);
    if (layer) {
      this.currentLayer = layer.id;
      return layer.id;
    }
    if (state.layers.length) {
      this.notify("Every layer is hidden or locked: show or unlock one, or add a layer", "warn");
      return null;
    }
    // The first layer of an empty document has one id for everybody: when two people
    // start drawing at once, one layer.add wins, the other is refused (conflict, and
    // quietly so: see main.js) and both draw on the same layer.
    this.session.submit({ kind: "layer.add", layer: FIRST_LAYER, name: "Layer 1" });
    this.currentLayer = FIRST_LAYER;
    return FIRST_LAYER;
  }

  // -- pointer -----------------------------------------------------------------------------

  down(e) {
    if (e.button === 2) return;
    this.canvas.setPointerCapture(e.pointerId);
    const at = this.toDoc(e);
    const panning = this.tool === "hand" || this.spaceDown || e.button === 1 || !this.editable() && this.tool !== "select";
    if (panning || !this.session.view) {
      this.gesture = { kind: "pan", sx: e.clientX, sy: e.clientY, vx: this.view.x, vy: this.view.y };
      this.stage.classList.add("panning");
      return;
    }
    if (this.tool === "text") {
      e.preventDefault(); // no compatibility mousedown: it would take the focus back
      this.startText(at);
      return;
    }
    if (this.tool === "select") {
      this.selectDown(at, e);
      return;
    }
    if (!this.editable()) return;
    const pressure = e.pointerType === "mouse" ? 0.5 : e.pressure || 0.5;
    const { color, fill, width } = this.style;
    if (this.tool === "pen") {
      this.gesture = { kind: "draw", shape: "stroke", id: newId("e"), props: { points: [[r2(at.x), r2(at.y), pressure]], color, width } };
    } else {
      const props = this.tool === "line"
        ? { x: r2(at.x), y: r2(at.y), x2: r2(at.x), y2: r2(at.y), color, width }
        : { x: r2(at.x), y: r2(at.y), w: 0, h: 0, color, width, ...(fill ? { fill } : {}) };
      this.gesture = { kind: "draw", shape: this.tool, id: newId("e"), origin: at, props };
    }
    this.sendPresence();
    this.redraw();
  }

  selectDown(at, e) {
    const state = this.state;
    const zoom = this.view.zoom;
    // The resize handle of the single selected element first.
    if (this.selection.size === 1 && this.editable()) {
      const [id] = this.selection;
      const found = findElement(state, id);
      if (found && resizedProps(found.element, at.x, at.y)) {
        const b = bounds(found.element);
        const pad = 4 / zoom;
        if (Math.abs(at.x - (b.x + b.w + pad)) <= 8 / zoom && Math.abs(at.y - (b.y + b.h + pad)) <= 8 / zoom) {
          // Resize from where the handle was grabbed: the corner keeps its offset.
          const off = { x: b.x + b.w - at.x, y: b.y + b.h - at.y };
          this.gesture = { kind: "resize", id, off, at: { x: b.x + b.w, y: b.y + b.h } };
          return;
        }
      }
    }
    let hit = null;
    for (const [layer, element] of topDown(state)) {
      if (!layer.visible || layer.locked) continue;
      if (hits(element, at.x, at.y, 4 / zoom)) { hit = element; break; }
    }
    if (!hit) {
      if (!e.shiftKey) this.selection.clear();
      this.gesture = { kind: "pan", sx: e.clientX, sy: e.clientY, vx: this.view.x, vy: this.view.y, select: true };
    } else {
      if (e.shiftKey) {
        if (this.selection.has(hit.id)) this.selection.delete(hit.id);
        else this.selection.add(hit.id);
      } else if (!this.selection.has(hit.id)) {
        this.selection = new Set([hit.id]);
      }
      this.gesture = this.editable() ? { kind: "move", from: at, dx: 0, dy: 0 } : null;
    }
    this.dispatchSelection();
    this.sendPresence();
    this.redraw();
  }

  move(e) {
    const at = this.toDoc(e);
    this.cursor = at;
    const g = this.gesture;
    if (g && g.kind === "pan") {
      if (g.select && Math.hypot(e.clientX - g.sx, e.clientY - g.sy) < 3) return;
      this.view.x = g.vx - (e.clientX - g.sx) / this.view.zoom;
      this.view.y = g.vy - (e.clientY - g.sy) / this.view.zoom;
    } else if (g && g.kind === "draw") {
      const p = g.props;
      if (g.shape === "stroke") {
        const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
        for (const ce of events.length ? events : [e]) {
          const pt = this.toDoc(ce);
          const pressure = ce.pointerType === "mouse" ? 0.5 : ce.pressure || 0.5;
          const last = p.points[p.points.length - 1];
          if (Math.hypot(pt.x - last[0], pt.y - last[1]) * this.view.zoom < 1.5) continue;
          if (p.points.length < 10000) p.points.push([r2(pt.x), r2(pt.y), Math.round(pressure * 1000) / 1000]);
        }
      } else if (g.shape === "line") {
        p.x2 = r2(at.x);
        p.y2 = r2(at.y);
      } else {
        p.x = r2(Math.min(g.origin.x, at.x));
        p.y = r2(Math.min(g.origin.y, at.y));
        p.w = r2(Math.abs(at.x - g.origin.x));
        p.h = r2(Math.abs(at.y - g.origin.y));
      }
    } else if (g && g.kind === "move") {
      g.dx = at.x - g.from.x;
      g.dy = at.y - g.from.y;
    } else if (g && g.kind === "resize") {
      g.at = { x: at.x + g.off.x, y: at.y + g.off.y };
    }
    this.sendPresence();
    this.redraw();
  }

  up(e) {
    const g = this.gesture;
    this.gesture = null;
    this.stage.classList.remove("panning");
    if (!g) return;
    if (g.kind === "draw") {
      const p = g.props;
      const tiny = g.shape === "stroke" ? false
        : g.shape === "line" ? Math.hypot(p.x2 - p.x, p.y2 - p.y) < 2
        : p.w < 2 && p.h < 2;
      const layer = tiny ? null : this.targetLayer();
      if (layer) {
        this.session.submit({ kind: "element.add", element: g.id, layer, shape: g.shape, props: p });
      }
    } else if (g.kind === "move" && (Math.abs(g.dx) > 0.01 || Math.abs(g.dy) > 0.01)) {
      const ops = [];
      for (const id of this.selection) {
        const found = findElement(this.session.view, id);
        if (found) ops.push({ kind: "element.update", element: id, set: movedProps(found.element, g.dx, g.dy) });
      }
      this.submitAll(ops);
    } else if (g.kind === "resize") {
      const found = findElement(this.session.view, g.id);
      const set = found && resizedProps(found.element, g.at.x, g.at.y);
      if (set) this.session.submit({ kind: "element.update", element: g.id, set });
    }
    this.sendPresence();
    this.redraw();
  }

  submitAll(ops) {
    if (ops.length === 1) this.session.submit(ops[0]);
    else if (ops.length > 1) this.session.submit({ kind: "batch", ops: ops.slice(0, 100) });
  }

  // -- text --------------------------------------------------------------------------------

  startText(at) {
    if (!this.editable()) return;
    this.finishText();
    const input = document.getElementById("text-input");
    const size = Math.max(12, this.style.width * 4);
    this.textAt = { x: r2(at.x), y: r2(at.y), size };
    input.classList.remove("hidden");
    input.style.left = `${(at.x - this.view.x) * this.view.zoom}px`;
    input.style.top = `${(at.y - this.view.y) * this.view.zoom}px`;
    input.style.fontSize = `${size * this.view.zoom}px`;
    input.value = "";
    input.focus();
    input.onkeydown = (ev) => {
      ev.stopPropagation();
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); this.finishText(); }
      if (ev.key === "Escape") { input.value = ""; this.finishText(); }
    };
    input.onblur = () => this.finishText();
  }

  finishText() {
    const input = document.getElementById("text-input");
    if (!input || !this.textAt) return;
    const at = this.textAt;
    this.textAt = null;
    const text = input.value.slice(0, 10000);
    input.classList.add("hidden");
    input.onblur = null;
    if (!text.trim()) return;
    const layer = this.targetLayer();
    if (!layer) return;
    const { color } = this.style;
    this.session.submit({
      kind: "element.add", element: newId("e"), layer, shape: "text",
      props: { x: at.x, y: at.y, text, size: at.size, color },
    });
  }

  // -- keyboard ----------------------------------------------------------------------------

  key(e, down) {
    const typing = e.target instanceof HTMLElement && (e.target.matches("input, textarea, select") || e.target.isContentEditable);
    if (typing) return;
    if (e.key === " ") {
      this.spaceDown = down;
      if (down) e.preventDefault();
      return;
    }
    if (!down) return;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && (e.key === "z" || e.key === "Z")) {
      e.preventDefault();
      this.undo(e.shiftKey);
      return;
    }
    if (mod && (e.key === "y" || e.key === "Y")) {
      e.preventDefault();
      this.undo(true);
      return;
    }
    if (mod) return;
    if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      this.deleteSelection();
      return;
    }
    if (e.key === "Escape") {
      this.selection.clear();
      this.dispatchSelection();
      this.redraw();
      return;
    }
    const tool = { v: "select", p: "pen", r: "rect", e: "ellipse", l: "line", t: "text", h: "hand" }[e.key.toLowerCase()];
    if (tool && (this.editable() || tool === "hand" || tool === "select")) {
      this.setTool(tool);
      this.dispatchTool();
    }
  }

  dispatchTool() {
    for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === this.tool);
  }

  dispatchSelection() {
    document.dispatchEvent(new CustomEvent("atelier:selection"));
  }

  undo(redo) {
    if (!this.editable()) return;
    this.session.submit({ kind: redo ? "redo" : "undo" });
  }

  deleteSelection() {
    if (!this.editable()) return;
    const ops = [...this.selection]
      .filter((id) => findElement(this.session.view, id))
      .map((id) => ({ kind: "element.remove", element: id }));
    this.selection.clear();
    this.submitAll(ops);
    this.dispatchSelection();
  }

  // A style control changed: the selection takes it too.
  restyle(set) {
    Object.assign(this.style, set);
    if (!this.editable() || this.selection.size === 0) return;
    const ops = [];
    for (const id of this.selection) {
      const found = findElement(this.session.view, id);
      if (!found) continue;
      const fit = { ...set };
      if ("fill" in fit && !["rect", "ellipse"].includes(found.element.shape)) delete fit.fill;
      if (Object.keys(fit).length) ops.push({ kind: "element.update", element: id, set: fit });
    }
    this.submitAll(ops);
  }

  pruneSelection() {
    const state = this.session.view;
    if (!state) return;
    for (const id of [...this.selection]) if (!findElement(state, id)) this.selection.delete(id);
  }

  // -- presence ----------------------------------------------------------------------------

  sendPresence() {
    const g = this.gesture;
    const state = { color: colorOf(this.session.user), tool: this.tool };
    if (this.cursor) state.cursor = [r2(this.cursor.x), r2(this.cursor.y)];
    if (this.selection.size) state.sel = [...this.selection].slice(0, 20);
    if (g && g.kind === "draw") {
      const props = { ...g.props };
      if (g.shape === "stroke") {
        props.points = decimate(g.props.points, MAX_DRAFT_POINTS).map(([x, y, p]) => [Math.round(x * 10) / 10, Math.round(y * 10) / 10, Math.round(p * 100) / 100]);
      }
      state.draft = { shape: g.shape, props };
    }
    this.session.setPresence(state);
  }

  // -- painting ----------------------------------------------------------------------------

  redraw(now = false) {
    if (now) {
      this.paint();
      return;
    }
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.paint();
    });
  }

  transformFor() {
    const g = this.gesture;
    if (!g || (g.kind !== "move" && g.kind !== "resize")) return null;
    return (element) => {
      if (g.kind === "move" && this.selection.has(element.id)) {
        return { ...element, props: { ...element.props, ...movedProps(element, g.dx, g.dy) } };
      }
      if (g.kind === "resize" && element.id === g.id) {
        return { ...element, props: { ...element.props, ...resizedProps(element, g.at.x, g.at.y) } };
      }
      return element;
    };
  }

  paint() {
    const { w, h, dpr } = this.size;
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const state = this.state;
    const transform = this.transformFor();
    drawDocument(ctx, state, this.view, w, h, { token: this.token, redraw: () => this.redraw(), transform });
    ctx.save();
    ctx.scale(this.view.zoom, this.view.zoom);
    ctx.translate(-this.view.x, -this.view.y);
    if (state && !this.preview) {
      // Others' selections, then ours.
      for (const peer of this.session.peers.values()) {
        for (const id of peer.state?.sel ?? []) {
          const found = findElement(state, id);
          if (found) drawSelection(ctx, found.element, peer.state.color ?? colorOf(peer.user), this.view.zoom, false);
        }
      }
      for (const id of this.selection) {
        const found = findElement(state, id);
        if (!found) continue;
        const element = transform ? transform(found.element) : found.element;
        const handle = this.selection.size === 1 && this.editable() && resizedProps(element, 0, 0) !== null;
        drawSelection(ctx, element, "#4f46e5", this.view.zoom, handle);
      }
      // Peers' drafts (strokes and shapes while they draw), then their cursors.
      for (const peer of this.session.peers.values()) {
        const draft = peer.state?.draft;
        if (draft && typeof draft === "object" && draft.props) drawDraft(ctx, draft.shape, draft.props);
      }
      for (const peer of this.session.peers.values()) {
        const c = peer.state?.cursor;
        if (Array.isArray(c) && c.length === 2) {
          drawCursor(ctx, c[0], c[1], peer.state.color ?? colorOf(peer.user), peer.name || peer.user, this.view.zoom);
        }
      }
    }
    const g = this.gesture;
    if (g && g.kind === "draw") drawDraft(ctx, g.shape, g.props);
    ctx.restore();
  }

  // The document alone (no overlays) painted at 1:1 on an offscreen canvas: the same
  // hash on every client that holds the same state.
  documentHash(w = 800, h = 600) {
    const off = new OffscreenCanvas(w, h);
    const ctx = off.getContext("2d", { willReadFrequently: true });
    drawDocument(ctx, this.session.view, { x: 0, y: 0, zoom: 1 }, w, h, {});
    return pixelHash(ctx, w, h);
  }
}
