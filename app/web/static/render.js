// Painting a state on a 2D canvas (docs/webclient.md says why a canvas and not SVG).
// drawDocument() paints the document alone (the same pixels on every client for the same
// state, view and size); the editor paints its overlays (selection, drafts, cursors)
// after it.

import { bounds } from "./model.js";

const images = new Map(); // asset sha256 -> ImageBitmap | "loading" | "failed"

export function loadImage(sha, token, onLoad) {
  if (images.has(sha)) return;
  images.set(sha, "loading");
  fetch(`/api/assets/${sha}`, { headers: { Authorization: `Bearer ${token}` } })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
    .then((blob) => createImageBitmap(blob))
    .then((bitmap) => { images.set(sha, bitmap); onLoad(); })
    .catch(() => images.set(sha, "failed"));
}

function strokePath(ctx, points, ox, oy, width, color) {
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (points.length === 1) {
    const [x, y, p] = points[0];
    ctx.beginPath();
    ctx.arc(x + ox, y + oy, Math.max(0.5, (width * (0.25 + 0.75 * p)) / 2), 0, Math.PI * 2);
    ctx.fill();
    return;
  }
  // Each segment is as wide as the pressure at its ends (pointer pressure 0..1).
  for (let i = 1; i < points.length; i++) {
    const [x0, y0, p0] = points[i - 1];
    const [x1, y1, p1] = points[i];
    ctx.lineWidth = Math.max(0.5, width * (0.25 + 0.75 * ((p0 + p1) / 2)));
    ctx.beginPath();
    ctx.moveTo(x0 + ox, y0 + oy);
    ctx.lineTo(x1 + ox, y1 + oy);
    ctx.stroke();
  }
}

export function drawElement(ctx, element, token, redraw) {
  const p = element.props;
  const color = p.color ?? "#000000";
  const width = p.width ?? 1;
  ctx.save();
  if (p.opacity != null) ctx.globalAlpha *= p.opacity;
  if (p.rotation) {
    const b = bounds(element);
    ctx.translate(b.x + b.w / 2, b.y + b.h / 2);
    ctx.rotate((p.rotation * Math.PI) / 180);
    ctx.translate(-(b.x + b.w / 2), -(b.y + b.h / 2));
  }
  const x = p.x ?? 0;
  const y = p.y ?? 0;
  switch (element.shape) {
    case "rect":
    case "ellipse": {
      ctx.beginPath();
      if (element.shape === "rect") ctx.rect(x, y, p.w ?? 0, p.h ?? 0);
      else ctx.ellipse(x + (p.w ?? 0) / 2, y + (p.h ?? 0) / 2, (p.w ?? 0) / 2, (p.h ?? 0) / 2, 0, 0, Math.PI * 2);
      if (p.fill) { ctx.fillStyle = p.fill; ctx.fill(); }
      if (p.color || !p.fill) {
        ctx.strokeStyle = color;
        ctx.lineWidth = width;
        if (width > 0) ctx.stroke();
      }
      break;
    }
    case "line":
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.lineCap = "round";
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(p.x2 ?? x, p.y2 ?? y);
      ctx.stroke();
      break;
    case "text": {
      const size = p.size ?? 24;
      ctx.font = `${size}px sans-serif`;
      ctx.textBaseline = "top";
      ctx.fillStyle = p.fill ?? color;
      (p.text ?? "").split("\n").forEach((line, i) => ctx.fillText(line, x, y + i * size * 1.2));
      break;
    }
    case "stroke":
      strokePath(ctx, p.points ?? [], x, y, p.width ?? 3, color);
      break;
    case "image": {
      const img = images.get(p.asset);
      if (img && typeof img === "object") ctx.drawImage(img, x, y, p.w ?? img.width, p.h ?? img.height);
      else {
        if (!img && token) loadImage(p.asset, token, redraw);
        ctx.strokeStyle = "#9ca3af";
        ctx.strokeRect(x, y, p.w ?? 100, p.h ?? 100);
      }
      break;
    }
    default:
      break;
  }
  ctx.restore();
}

// Paint `state` with the view transform {x, y, zoom} on a canvas of css size w x h.
// `shift` optionally moves some elements while they are dragged: id -> {dx, dy}.
export function drawDocument(ctx, state, view, w, h, { token, redraw, transform } = {}) {
  ctx.save();
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, w, h);
  ctx.scale(view.zoom, view.zoom);
  ctx.translate(-view.x, -view.y);
  if (state) {
    for (const layer of state.layers) {
      if (!layer.visible) continue;
      ctx.save();
      ctx.globalAlpha = layer.opacity;
      for (const element of layer.elements) {
        drawElement(ctx, transform ? transform(element) : element, token, redraw);
      }
      ctx.restore();
    }
  }
  ctx.restore();
}

export function drawDraft(ctx, shape, props) {
  drawElement(ctx, { id: "draft", shape, props }, null, null);
}

export function drawSelection(ctx, element, color, zoom, handle) {
  const b = bounds(element);
  const pad = 4 / zoom;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5 / zoom;
  ctx.setLineDash([5 / zoom, 3 / zoom]);
  ctx.strokeRect(b.x - pad, b.y - pad, b.w + 2 * pad, b.h + 2 * pad);
  ctx.setLineDash([]);
  if (handle) {
    const s = 8 / zoom;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(b.x + b.w + pad - s / 2, b.y + b.h + pad - s / 2, s, s);
    ctx.strokeRect(b.x + b.w + pad - s / 2, b.y + b.h + pad - s / 2, s, s);
  }
  ctx.restore();
}

// A peer's cursor: an arrow and a name tag, at a fixed size on screen.
export function drawCursor(ctx, x, y, color, name, zoom) {
  ctx.save();
  ctx.translate(x, y);
  ctx.scale(1 / zoom, 1 / zoom);
  ctx.fillStyle = color;
  ctx.strokeStyle = "#ffffff";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(0, 0);
  ctx.lineTo(0, 17);
  ctx.lineTo(4.5, 13);
  ctx.lineTo(8, 20);
  ctx.lineTo(11, 18.5);
  ctx.lineTo(7.5, 12);
  ctx.lineTo(13, 12);
  ctx.closePath();
  ctx.fill();
  ctx.stroke();
  ctx.font = "12px sans-serif";
  const tw = ctx.measureText(name).width;
  ctx.beginPath();
  ctx.roundRect(12, 20, tw + 12, 19, 6);
  ctx.fill();
  ctx.fillStyle = "#ffffff";
  ctx.textBaseline = "middle";
  ctx.fillText(name, 18, 30);
  ctx.restore();
}

// FNV-1a over the pixels: two canvases painted alike have the same hash.
export function pixelHash(ctx, w, h) {
  const data = ctx.getImageData(0, 0, w, h).data;
  let hash = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) {
    hash ^= data[i];
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16);
}
