// The side panels: layers (add, rename, hide, lock, reorder, opacity, remove), history
// (activity, named versions, a slider over versions that previews `?at=v`, restore)
// and sharing (the owner adds members as editor or viewer).

import { newId } from "./session.js";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function when(ts) {
  const d = new Date(ts);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export class LayersPanel {
  constructor({ session, editor, list, addButton }) {
    this.session = session;
    this.editor = editor;
    this.list = list;
    this.renaming = null;
    this.lastKey = "";
    addButton.onclick = () => {
      const id = newId("L");
      const n = (session.view?.layers.length ?? 0) + 1;
      session.submit({ kind: "layer.add", layer: id, name: `Layer ${n}` });
      editor.currentLayer = id;
      this.render(true);
    };
    session.addEventListener("change", () => this.render());
    this.render(true);
  }

  render(force = false) {
    const state = this.session.view;
    if (!state) return;
    const editable = this.editor.editable();
    const current = this.editor.currentLayer;
    const key = JSON.stringify([state.layers.map((l) => [l.id, l.name, l.visible, l.locked, l.opacity]), editable, current]);
    if (!force && (key === this.lastKey || this.renaming)) return;
    this.lastKey = key;
    const s = this.session;
    const rows = [];
    const n = state.layers.length;
    state.layers.forEach((layer, index) => {
      const update = (set) => s.submit({ kind: "layer.update", layer: layer.id, set });
      const name = el("span", { class: "name", title: "Click to draw on this layer; double-click to rename" }, layer.name);
      name.onclick = () => this.choose(layer.id);
      if (editable) name.ondblclick = () => this.rename(layer, name);
      const buttons = [
        el("button", { type: "button", class: "vis", title: layer.visible ? "Hide" : "Show", onclick: () => update({ visible: !layer.visible }) }, layer.visible ? "Hide" : "Show"),
        el("button", { type: "button", class: "lock", title: layer.locked ? "Unlock" : "Lock", onclick: () => update({ locked: !layer.locked }) }, layer.locked ? "Unlock" : "Lock"),
        name,
        el("button", { type: "button", class: "up", title: "Move up", onclick: () => s.submit({ kind: "layer.move", layer: layer.id, index: index + 1 }) }, "▲"),
        el("button", { type: "button", class: "down", title: "Move down", onclick: () => s.submit({ kind: "layer.move", layer: layer.id, index: Math.max(0, index - 1) }) }, "▼"),
        el("button", { type: "button", class: "remove", title: "Remove the layer and its elements", onclick: () => s.submit({ kind: "layer.remove", layer: layer.id }) }, "✕"),
      ];
      for (const b of buttons) if (b.tagName === "BUTTON") b.disabled = !editable;
      buttons[3].disabled ||= index === n - 1;
      buttons[4].disabled ||= index === 0;
      const opacity = el("input", { type: "range", min: "0", max: "1", step: "0.05", title: "Opacity", class: "opacity" });
      opacity.value = String(layer.opacity);
      opacity.disabled = !editable;
      opacity.onchange = () => update({ opacity: Number(opacity.value) });
      const li = el("li", { dataset: { layer: layer.id } }, ...buttons, opacity);
      if (layer.id === current) li.classList.add("current");
      if (!layer.visible) li.classList.add("hidden-layer");
      rows.push(li);
    });
    this.list.replaceChildren(...rows.reverse()); // top layer first
  }

  // The layer new shapes go to (no re-render: a double-click must find its target).
  choose(id) {
    this.editor.currentLayer = id;
    for (const li of this.list.children) li.classList.toggle("current", li.dataset.layer === id);
  }

  rename(layer, span) {
    const input = el("input", { class: "rename", maxlength: "200" });
    input.value = layer.name;
    this.renaming = layer.id;
    span.replaceWith(input);
    input.focus();
    input.select();
    const done = (save) => {
      if (this.renaming !== layer.id) return;
      this.renaming = null;
      const name = input.value.trim();
      if (save && name && name !== layer.name) {
        this.session.submit({ kind: "layer.update", layer: layer.id, set: { name } });
      }
      this.render(true);
    };
    input.onkeydown = (e) => {
      e.stopPropagation();
      if (e.key === "Enter") done(true);
      if (e.key === "Escape") done(false);
    };
    input.onblur = () => done(true);
  }
}

export class HistoryPanel {
  constructor({ session, editor, api, notify, root }) {
    this.session = session;
    this.editor = editor;
    this.api = api;
    this.notify = notify;
    this.root = root;
    this.slider = document.getElementById("history-slider");
    this.at = document.getElementById("history-at");
    this.banner = document.getElementById("preview-banner");
    this.open = false;
    this.refreshTimer = null;
    this.previewSeq = 0;
    this.slider.oninput = () => this.scrub(Number(this.slider.value));
    document.getElementById("preview-exit").onclick = () => this.exitPreview();
    document.getElementById("preview-restore").onclick = () => this.restore();
    document.getElementById("version-form").onsubmit = (e) => { e.preventDefault(); this.nameVersion(); };
    session.addEventListener("events", () => this.soon());
    session.addEventListener("change", () => this.syncSlider());
  }

  toggle(show = !this.open) {
    this.open = show;
    this.root.classList.toggle("hidden", !show);
    if (show) this.refresh();
    else this.exitPreview();
  }

  syncSlider() {
    const v = this.session.v;
    const atLive = Number(this.slider.value) >= Number(this.slider.max);
    this.slider.max = String(Math.max(1, v));
    if (atLive && !this.editor.preview) this.slider.value = this.slider.max;
    if (!this.editor.preview) this.at.textContent = `live: version ${v}`;
  }

  soon() {
    if (!this.open || this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => { this.refreshTimer = null; this.refresh(); }, 700);
  }

  async refresh() {
    const id = this.session.docId;
    try {
      const [activity, versions] = await Promise.all([this.api.activity(id, 30), this.api.versions(id)]);
      this.renderActivity(activity.items ?? []);
      this.renderVersions(versions.versions ?? []);
    } catch (err) {
      this.notify(`History is unavailable: ${err.message}`, "warn");
    }
  }

  renderActivity(items) {
    const list = document.getElementById("activity-list");
    list.replaceChildren(...items.map((it) => {
      const li = el("li", {}, el("span", {}, `v${it.v} ${it.actor}: ${it.kind}`), el("span", { class: "hint" }, when(it.ts)));
      li.onclick = () => { this.slider.value = String(it.v); this.scrub(it.v); };
      return li;
    }));
  }

  renderVersions(versions) {
    const list = document.getElementById("version-list");
    list.replaceChildren(...versions.map((ver) => {
      const go = el("button", { type: "button", title: "Show this version" }, `v${ver.v}`);
      go.onclick = () => { this.slider.value = String(ver.v); this.scrub(ver.v); };
      return el("li", {}, el("span", {}, ver.name), go);
    }));
  }

  async nameVersion() {
    const input = document.getElementById("version-name");
    const name = input.value.trim();
    if (!name) return;
    try {
      const named = await this.api.nameVersion(this.session.docId, name);
      input.value = "";
      this.notify(`Saved version “${named.name}” (v${named.v})`, "info");
      this.refresh();
    } catch (err) {
      this.notify(`Could not save the version: ${err.message}`, "error");
    }
  }

  // Show the document as it was at version v: the live session goes on underneath.
  async scrub(v) {
    if (v >= this.session.v) {
      this.exitPreview();
      return;
    }
    const seq = ++this.previewSeq;
    this.at.textContent = `loading version ${v}…`;
    try {
      const doc = await this.api.document(this.session.docId, v);
      if (seq !== this.previewSeq) return;
      const state = doc.state;
      state.v = doc.v;
      this.editor.preview = state;
      this.editor.selection.clear();
      this.banner.classList.remove("hidden");
      document.getElementById("preview-text").textContent = `Version ${doc.v} of ${this.session.v} (the live document keeps going)`;
      this.at.textContent = `showing version ${doc.v}`;
      this.editor.redraw();
    } catch (err) {
      if (seq === this.previewSeq) this.notify(`Could not load version ${v}: ${err.message}`, "error");
    }
  }

  exitPreview() {
    this.previewSeq += 1;
    if (!this.editor.preview) return;
    this.editor.preview = null;
    this.banner.classList.add("hidden");
    this.slider.value = this.slider.max;
    this.syncSlider();
    this.editor.redraw();
  }

  async restore() {
    const v = this.editor.preview?.v;
    if (!v) return;
    try {
      const done = await this.api.restore(this.session.docId, v);
      this.notify(`Restored version ${v} (as version ${done.v})`, "info");
      this.exitPreview();
    } catch (err) {
      this.notify(`Could not restore: ${err.message}`, "error");
    }
  }
}

export class SharePanel {
  constructor({ session, api, notify, root }) {
    this.root = root;
    const result = document.getElementById("share-result");
    const user = document.getElementById("share-user");
    const role = document.getElementById("share-role");
    document.getElementById("share-form").onsubmit = async (e) => {
      e.preventDefault();
      try {
        await api.setMember(session.docId, user.value.trim(), role.value);
        result.textContent = `${user.value.trim()} is now ${role.value === "viewer" ? "a viewer" : "an editor"}.`;
        notify(result.textContent, "info");
      } catch (err) {
        result.textContent = `Could not share: ${err.message}`;
      }
    };
    document.getElementById("share-remove").onclick = async () => {
      try {
        await api.removeMember(session.docId, user.value.trim());
        result.textContent = `${user.value.trim()} was removed.`;
      } catch (err) {
        result.textContent = `Could not remove: ${err.message}`;
      }
    };
  }

  toggle(show) {
    this.root.classList.toggle("hidden", !show);
  }
}
