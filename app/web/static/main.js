// The page: sign-in, the list of documents, and the editor of one document.
// Routes live in the fragment: `#/` (documents), `#/d/<id>` (a document). A token may
// come in the fragment too (`#token=...` or `#/d/<id>?token=...`); it is kept in this
// tab's sessionStorage (a reload keeps it) and taken out of the address bar.
//
// window.atelier exposes the client's model for tests and the curious: state() is what
// the canvas shows (confirmed + pending), confirmed(), pending(), status(), role().

import { Api, ApiError, claims, devToken } from "./api.js";
import { Editor, FIRST_LAYER, colorOf } from "./editor.js";
import { HistoryPanel, LayersPanel, SharePanel } from "./panels.js";
import { DocSession } from "./session.js";

const $ = (id) => document.getElementById(id);
const dev = document.body.dataset.env === "dev";
let token = null;
let me = null; // the token's claims
let api = null;
let open = null; // {session, editor, layers, history, share}
let noticeTimer = null;

function notify(text, level = "info") {
  const box = $("notice");
  box.textContent = text;
  box.className = level === "error" ? "error" : "";
  box.dataset.level = level;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => box.classList.add("hidden"), level === "error" ? 8000 : 4000);
}

function show(page) {
  for (const id of ["signin", "documents", "editor"]) $(id).classList.toggle("hidden", id !== page);
}

// -- sign-in -------------------------------------------------------------------------------

function takeTokenFromFragment() {
  const hash = location.hash;
  const match = hash.match(/[#?&]token=([^&]+)/);
  if (!match) return;
  sessionStorage.setItem("atelier.token", decodeURIComponent(match[1]));
  const rest = hash.replace(/[?&]?token=[^&]+/, "").replace(/^#&/, "#") || "#/";
  history.replaceState(null, "", location.pathname + (rest === "#" ? "#/" : rest));
}

function signIn(newToken) {
  const c = claims(newToken);
  if (!c || !c.sub) {
    notify("That is not a token", "error");
    return false;
  }
  if (c.exp && c.exp * 1000 < Date.now()) {
    notify("That token has expired", "error");
    return false;
  }
  token = newToken;
  me = c;
  api = new Api(token);
  sessionStorage.setItem("atelier.token", token);
  // The user id is what others share with: shown when it differs from the name.
  $("me").textContent = c.name && c.name !== c.sub ? `${c.name} (${c.sub})` : c.sub;
  $("me").title = `user id: ${c.sub}`;
  $("sign-out").classList.remove("hidden");
  return true;
}

function signOut() {
  closeDocument();
  sessionStorage.removeItem("atelier.token");
  token = null;
  me = null;
  $("me").textContent = "";
  $("sign-out").classList.add("hidden");
  location.hash = "#/";
  route();
}

function showSignIn() {
  show("signin");
  $("signin-dev").classList.toggle("hidden", !dev);
  $("signin-token").classList.toggle("hidden", dev);
  setStatus("idle", "");
}

$("signin-dev").onsubmit = async (e) => {
  e.preventDefault();
  try {
    if (signIn(await devToken($("signin-name").value))) route();
  } catch (err) {
    notify(`Sign-in failed: ${err.message}`, "error");
  }
};
$("signin-token").onsubmit = (e) => {
  e.preventDefault();
  if (signIn($("signin-tok").value.trim())) route();
};
$("sign-out").onclick = signOut;

// -- documents -----------------------------------------------------------------------------

async function showDocuments() {
  show("documents");
  $("doc-title").textContent = "";
  setStatus("idle", "");
  try {
    const { documents } = await api.documents();
    $("doc-empty").classList.toggle("hidden", documents.length > 0);
    $("doc-list").replaceChildren(...documents.map((d) => {
      const tr = document.createElement("tr");
      tr.dataset.doc = d.id;
      for (const text of [d.title, d.role, d.owner, d.layers, d.elements, new Date(d.updated_at).toLocaleString()]) {
        const td = document.createElement("td");
        td.textContent = String(text);
        tr.append(td);
      }
      tr.onclick = () => { location.hash = `#/d/${encodeURIComponent(d.id)}`; };
      return tr;
    }));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return signOut();
    notify(`Could not list your documents: ${err.message}`, "error");
  }
}

$("create-doc").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const doc = await api.createDocument($("new-title").value.trim());
    $("new-title").value = "";
    location.hash = `#/d/${encodeURIComponent(doc.id)}`;
  } catch (err) {
    notify(`Could not create the document: ${err.message}`, "error");
  }
};
$("open-doc").onsubmit = (e) => {
  e.preventDefault();
  const id = $("open-id").value.trim();
  if (id) location.hash = `#/d/${encodeURIComponent(id)}`;
};

// -- the editor ----------------------------------------------------------------------------

const STATUS_TEXT = {
  idle: "",
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting",
  offline: "offline",
  "signed-out": "signed out",
  forbidden: "no access",
  "not-found": "no such document",
};

function setStatus(status, detail) {
  const conn = $("conn");
  conn.dataset.status = status;
  const queued = open ? open.session.pending.length : 0;
  let text = STATUS_TEXT[status] ?? status;
  if (detail && status === "reconnecting") text += ` ${detail}`;
  if (queued && status !== "live") text += ` · ${queued} queued`;
  $("conn-text").textContent = text;
  conn.classList.toggle("hidden", status === "idle");
}

function applyRole(session) {
  const role = session.role;
  const viewer = role === "viewer";
  document.body.classList.toggle("viewer", viewer);
  document.body.classList.toggle("not-owner", role !== "owner");
  $("view-only").classList.toggle("hidden", !viewer);
  $("view-only-mark").classList.toggle("hidden", !viewer);
  if (viewer && open && !["hand", "select"].includes(open.editor.tool)) {
    open.editor.setTool("hand");
    open.editor.dispatchTool();
  }
  open?.layers.render(true);
}

function renderPeers(session) {
  const chips = [];
  const seen = new Set();
  for (const peer of session.peers.values()) {
    if (seen.has(peer.user)) continue;
    seen.add(peer.user);
    const chip = document.createElement("span");
    chip.className = "peer";
    chip.title = peer.name || peer.user;
    chip.textContent = (peer.name || peer.user).slice(0, 2).toUpperCase();
    chip.style.background = peer.state?.color ?? colorOf(peer.user);
    chips.push(chip);
  }
  $("peers").replaceChildren(...chips);
}

function openDocument(docId) {
  if (open && open.session.docId === docId) return;
  closeDocument();
  show("editor");
  $("doc-title").textContent = docId;
  const session = new DocSession({ docId, token, user: me.sub });
  const editor = new Editor({ session, canvas: $("canvas"), stage: $("stage"), notify, token, name: me.name || me.sub });
  const layers = new LayersPanel({ session, editor, list: $("layer-list"), addButton: $("layer-add") });
  const history = new HistoryPanel({ session, editor, api, notify, root: $("history-panel") });
  const share = new SharePanel({ session, api, notify, root: $("share-panel") });
  open = { session, editor, layers, history, share };
  session.addEventListener("status", (e) => {
    setStatus(e.detail.status, e.detail.detail);
    if (e.detail.status === "live") applyRole(session);
    if (e.detail.status === "signed-out") {
      notify("Your token was refused; sign in again", "error");
      signOut();
    } else if (e.detail.status === "forbidden") {
      notify(e.detail.detail || "You have no access to this document", "error");
    } else if (e.detail.status === "not-found") {
      notify("There is no such document", "error");
    }
  });
  session.addEventListener("change", () => {
    if (!$("title-input")) $("doc-title").textContent = session.view?.title || docId;
    document.title = `${session.view?.title || docId} · Atelier`;
    setStatus(session.status, session.statusDetail);
  });
  session.addEventListener("presence", () => renderPeers(session));
  session.addEventListener("rejected", (e) => {
    const { code, message, op } = e.detail;
    if (op.kind === "layer.add" && op.layer === FIRST_LAYER && code === "conflict") return;
    const what = op.kind === "undo" ? "Nothing to undo" : op.kind === "redo" ? "Nothing to redo"
      : `Your edit (${op.kind}) was undone: ${message} [${code}]`;
    notify(what, op.kind === "undo" || op.kind === "redo" ? "warn" : "error");
  });
  editor.setTool(editor.tool);
  editor.dispatchTool();
  editor.dispatchView();
  session.connect();
}

function closeDocument() {
  if (!open) return;
  document.title = "Atelier";
  open.session.close();
  open.editor.destroy();
  open = null;
  document.body.classList.remove("viewer", "not-owner");
  for (const id of ["history-panel", "share-panel", "preview-banner"]) $(id).classList.add("hidden");
  for (const id of ["history-btn", "share-btn"]) $(id).classList.remove("active");
  $("view-only").classList.add("hidden");
  $("view-only-mark").classList.add("hidden");
  $("peers").replaceChildren();
}

// Toolbar controls act on whichever document is open.
for (const button of document.querySelectorAll("[data-tool]")) {
  button.onclick = () => {
    if (!open) return;
    open.editor.setTool(button.dataset.tool);
    open.editor.dispatchTool();
  };
}
$("color").oninput = () => open?.editor.restyle({ color: $("color").value });
$("fill").oninput = () => {
  $("no-fill").checked = false;
  open?.editor.restyle({ fill: $("fill").value });
};
$("no-fill").onchange = () => open?.editor.restyle({ fill: $("no-fill").checked ? null : $("fill").value });
$("width").onchange = () => open?.editor.restyle({ width: Number($("width").value) });
$("delete").onclick = () => open?.editor.deleteSelection();
$("undo").onclick = () => open?.editor.undo(false);
$("redo").onclick = () => open?.editor.undo(true);
$("zoom-in").onclick = () => open?.editor.zoomAt(1.25, $("stage").clientWidth / 2, $("stage").clientHeight / 2);
$("zoom-out").onclick = () => open?.editor.zoomAt(0.8, $("stage").clientWidth / 2, $("stage").clientHeight / 2);
$("zoom-reset").onclick = () => open?.editor.resetView();
$("history-btn").onclick = () => {
  if (!open) return;
  open.share.toggle(false);
  open.history.toggle();
  $("history-btn").classList.toggle("active", open.history.open);
};
$("share-btn").onclick = () => {
  if (!open) return;
  const hidden = $("share-panel").classList.contains("hidden");
  open.share.toggle(hidden);
  $("share-btn").classList.toggle("active", hidden);
};
document.addEventListener("atelier:selection", () => {
  if (!open) return;
  const [id] = open.editor.selection;
  $("delete").disabled = open.editor.selection.size === 0;
  if (!id) return;
  const layer = open.session.view.layers.find((l) => l.elements.some((e) => e.id === id));
  if (!layer) return;
  open.layers.choose(layer.id);
  // The controls show the selected element's style (setting .value fires no input event).
  const props = layer.elements.find((e) => e.id === id).props;
  const hex = (c) => (typeof c === "string" && /^#[0-9a-fA-F]{6}/.test(c) ? c.slice(0, 7) : null);
  if (hex(props.color)) $("color").value = hex(props.color);
  if (hex(props.fill)) $("fill").value = hex(props.fill);
  $("no-fill").checked = !props.fill;
  if (typeof props.width === "number") $("width").value = String(props.width);
  Object.assign(open.editor.style, { color: $("color").value, fill: props.fill ? $("fill").value : null, width: Number($("width").value) });
});

// Double-click the title to rename the document (owners and editors).
$("doc-title").ondblclick = () => {
  if (!open || !open.session.canEdit() || !open.session.view) return;
  const title = $("doc-title");
  const input = document.createElement("input");
  input.id = "title-input";
  input.maxLength = 200;
  input.value = open.session.view.title;
  title.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const value = input.value.trim();
    if (save && open && value && value !== open.session.view.title) open.session.submit({ kind: "doc.rename", title: value });
    title.textContent = open?.session.view?.title ?? "";
  };
  input.onkeydown = (e) => {
    e.stopPropagation();
    if (e.key === "Enter") finish(true);
    if (e.key === "Escape") finish(false);
  };
  input.onblur = () => finish(true);
};

// -- routing -------------------------------------------------------------------------------

function route() {
  takeTokenFromFragment();
  if (!token) {
    const kept = sessionStorage.getItem("atelier.token");
    if (!kept || !signIn(kept)) {
      closeDocument();
      showSignIn();
      return;
    }
  }
  const m = location.hash.match(/^#\/d\/([^?&]+)/);
  if (m) openDocument(decodeURIComponent(m[1]));
  else {
    closeDocument();
    showDocuments();
  }
}

window.addEventListener("hashchange", route);
window.atelier = {
  state: () => (open?.session.view ? structuredClone(open.session.view) : null),
  confirmed: () => (open?.session.confirmed ? structuredClone(open.session.confirmed) : null),
  pending: () => (open ? open.session.pending.map(({ id, op }) => ({ id, op })) : []),
  status: () => open?.session.status ?? "idle",
  role: () => open?.session.role ?? null,
  user: () => me?.sub ?? null,
  peers: () => (open ? [...open.session.peers.values()].map((p) => ({ user: p.user, name: p.name, state: p.state })) : []),
  preview: () => (open?.editor.preview ? structuredClone(open.editor.preview) : null),
  view: () => (open ? { ...open.editor.view } : null),
  documentHash: (w, h) => open?.editor.documentHash(w, h) ?? null,
  layer: () => open?.editor.currentLayer ?? null,
};
route();
