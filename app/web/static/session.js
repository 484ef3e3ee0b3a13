// One open document: the websocket of PROTOCOL.md section 4, the confirmed state, our
// pending ops (the outbox) and the peers' presence.
//
//   confirmed  the state at the last event we applied (server order: events only)
//   pending    our ops without an answer, in the order we made them
//   view       confirmed + pending re-applied on top (what the canvas shows)
//
// An event of one of our ops (actor = us, id in pending) moves it from pending into
// confirmed; an ack does the same if the event came first (it always does: guarantee 2);
// a reject drops it and the view rolls back. On a dropped connection everything keeps
// working on the view; the outbox is re-sent, with the same ids, after the next welcome
// (hello with since = confirmed.v), so nothing is lost and nothing doubled (guarantee 3).

import { applyEvent, applyPending, clone, emptyState } from "./model.js";
import { Outbox } from "./outbox.js";

const RETRY_CODES = new Set(["unavailable", "rate_limited", "internal"]);
const MAX_IN_FLIGHT = 40; // under the server's per-connection in-flight limit (WS_OP_BURST)
const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 8000;
const PRESENCE_EVERY_MS = 50; // under WS_PRESENCE_RATE (30 a second)
const WELCOME_WITHIN_MS = 10000;

let counter = 0;
export function newId(prefix = "") {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  const rand = Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
  counter += 1;
  return `${prefix}${rand}${counter.toString(36)}`;
}

export class DocSession extends EventTarget {
  constructor({ docId, token, user }) {
    super();
    this.docId = docId;
    this.token = token;
    this.user = user;
    this.role = null;
    this.sessionId = null;
    this.outbox = new Outbox(user, docId);
    this.confirmed = this.outbox.snapshot; // a head start after a reload, possibly offline
    this.pending = this.outbox.ops.map((o) => ({ ...o, sent: false }));
    this.peers = new Map(); // session -> {user, name, state, seen}
    this.status = "connecting";
    this.ws = null;
    this.live = false;
    this.closed = false;
    this.backoff = 250;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.presenceState = null;
    this.presenceTimer = null;
    this.presenceSentAt = 0;
    this.view = null;
    this.recompute();
    // Offline only once the browser has said so by an event: navigator.onLine is false
    // from the start on a machine whose only interface is loopback, where a server on
    // localhost is still reachable, so it must not stop the first connect.
    this.offline = false;
    this.onOnline = () => { this.offline = false; this.backoff = 250; this.connect(); };
    this.onOffline = () => { this.offline = true; this.drop("offline"); };
    this.onHide = () => this.outbox.writeSnapshot();
    window.addEventListener("pagehide", this.onHide);
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.toucher = setInterval(() => this.outbox.save(), 5000);
  }

  // -- public ------------------------------------------------------------------------------

  get v() {
    return this.confirmed ? this.confirmed.v : 0;
  }

  canEdit() {
    return this.role === "owner" || this.role === "editor";
  }

  // Submit an edit: applied at once (pending), sent when connected, kept until answered.
  submit(op) {
    const id = newId("op");
    this.pending.push({ id, op, sent: false });
    this.persist();
    this.recompute();
    this.flush();
    return id;
  }

  setPresence(state) {
    this.presenceState = state;
    if (this.presenceTimer) return;
    const wait = Math.max(0, this.presenceSentAt + PRESENCE_EVERY_MS - Date.now());
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = null;
      if (!this.live) return;
      this.presenceSentAt = Date.now();
      this.send({ type: "presence", state: this.presenceState });
    }, wait);
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.toucher);
    this.stopHeartbeat();
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("pagehide", this.onHide);
    if (this.ws) this.ws.close(1000, "closed");
    this.outbox.drop();
  }

  // -- connection --------------------------------------------------------------------------

  connect() {
    if (this.closed || this.ws) return;
    clearTimeout(this.retryTimer);
    if (this.offline) {
      this.setStatus("offline");
      return;
    }
    this.setStatus("connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/documents/${encodeURIComponent(this.docId)}`);
    this.ws = ws;
    ws.onopen = () => {
      // No welcome in time: a half-open connection or a stuck proxy; try again.
      this.welcomeTimer = setTimeout(() => { if (this.ws === ws && !this.live) this.drop("no welcome"); }, WELCOME_WITHIN_MS);
      const hello = { type: "hello", token: this.token };
      if (this.confirmed && this.confirmed.v > 0) hello.since = this.confirmed.v;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (e) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      this.receive(msg);
    };
    ws.onerror = () => {}; // the close that follows says what to do
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.lost(e.code, e.reason);
    };
  }

  drop(why) {
    const ws = this.ws;
    if (ws) {
      this.ws = null;
      ws.onclose = null;
      ws.onmessage = null;
      try { ws.close(4000, why); } catch { /* already closing */ }
    }
    this.lost(0, why);
  }

  lost(code, reason) {
    this.live = false;
    clearTimeout(this.welcomeTimer);
    this.stopHeartbeat();
    for (const p of this.pending) p.sent = false;
    this.peers.clear();
    if (this.closed) return;
    this.emit("presence", {}); // their cursors go with the connection
    const fatal = { 4401: "signed-out", 4403: "forbidden", 4404: "not-found" }[code];
    if (fatal) {
      this.setStatus(fatal, reason);
      return;
    }
    if (this.offline) {
      this.setStatus("offline");
      return;
    }
    const wait = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, 10000);
    this.setStatus("reconnecting", `in ${(wait / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  flush() {
    if (!this.live) return;
    let inFlight = this.pending.filter((p) => p.sent).length;
    for (const p of this.pending) {
      if (inFlight >= MAX_IN_FLIGHT) break;
      if (p.sent || p.retryAt > Date.now()) continue;
      if (!this.send({ type: "op", id: p.id, op: p.op })) return;
      p.sent = true;
      inFlight += 1;
    }
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      this.send({ type: "ping", t: Date.now() });
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.drop("no pong"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  // -- messages ----------------------------------------------------------------------------

  receive(msg) {
    switch (msg.type) {
      case "welcome": return this.welcome(msg);
      case "event": return this.events([msg]);
      case "events": return this.events(msg.events);
      case "ack": return this.answered(msg.id, null, msg.v);
      case "reject": return this.rejected(msg);
      case "presence": return this.presence(msg);
      case "pong": clearTimeout(this.pongTimer); return undefined;
      case "error":
        this.emit("notice", { level: "warn", text: `server: ${msg.message}` });
        return undefined;
      default:
        return undefined; // the server may add message types
    }
  }

  welcome(msg) {
    clearTimeout(this.welcomeTimer);
    this.role = msg.role;
    this.sessionId = msg.session;
    this.user = msg.user;
    if (msg.state) {
      this.confirmed = msg.state;
      this.confirmed.v = msg.v;
    } else {
      if (!this.confirmed) this.confirmed = emptyState(this.docId);
      this.applyEvents(msg.events || []);
    }
    this.live = true;
    this.backoff = 250;
    this.setStatus("live");
    this.startHeartbeat();
    this.afterEvents();
    if (this.presenceState) this.setPresence(this.presenceState);
    this.flush();
  }

  events(list) {
    if (!this.confirmed) return;
    const gap = this.applyEvents(list);
    this.afterEvents(list);
    if (gap) this.drop("gap"); // never expected (guarantee 2); resume with since
  }

  applyEvents(list) {
    const mine = new Set();
    for (const e of list) {
      if (e.v <= this.confirmed.v) continue;
      if (e.v !== this.confirmed.v + 1) return true;
      applyEvent(this.confirmed, e.v, e.op);
      if (e.actor === this.user && e.id) mine.add(e.id);
    }
    if (mine.size) this.pending = this.pending.filter((p) => !mine.has(p.id));
    return false;
  }

  afterEvents(list = []) {
    this.persist(true);
    this.recompute();
    if (list.length) this.emit("events", { events: list });
  }

  answered(id, _code, v) {
    const before = this.pending.length;
    this.pending = this.pending.filter((p) => p.id !== id);
    if (this.pending.length !== before) {
      // Acked before we saw its event: only after a welcome with the full state (the
      // op was committed before it). Its effect is in `confirmed` already.
      this.persist();
      this.recompute();
    }
    this.emit("ack", { id, v });
    this.flush();
  }

  rejected(msg) {
    const p = this.pending.find((x) => x.id === msg.id);
    if (!p) return;
    if (RETRY_CODES.has(msg.code)) {
      p.sent = false;
      p.retryAt = Date.now() + 1000;
      setTimeout(() => this.flush(), 1050);
      return;
    }
    this.pending = this.pending.filter((x) => x.id !== msg.id);
    this.persist();
    this.recompute();
    this.emit("rejected", { id: msg.id, op: p.op, code: msg.code, message: msg.message });
    this.flush();
  }

  presence(msg) {
    if (msg.session === this.sessionId) return;
    if (msg.state === null) this.peers.delete(msg.session);
    else this.peers.set(msg.session, { user: msg.user, name: msg.name, state: msg.state, seen: Date.now() });
    this.emit("presence", {});
  }

  // -- state -------------------------------------------------------------------------------

  recompute() {
    if (!this.confirmed) {
      this.view = null;
    } else if (this.pending.length === 0) {
      this.view = this.confirmed;
    } else {
      const view = clone(this.confirmed);
      for (const p of this.pending) applyPending(view, p.op);
      this.view = view;
    }
    this.emit("change", {});
  }

  persist(withSnapshot = false) {
    if (withSnapshot && this.confirmed) this.outbox.keepSnapshot(this.confirmed);
    this.outbox.set(this.pending);
  }

  setStatus(status, detail = "") {
    this.status = status;
    this.statusDetail = detail;
    this.emit("status", { status, detail });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
