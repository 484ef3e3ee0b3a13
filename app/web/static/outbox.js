// The outbox: our ops that the server has not answered, kept in localStorage so that
// they survive a reload or a crash, with the last confirmed state they apply on.
//
// One outbox per (user, document, tab). The tab id lives in sessionStorage, which a
// reload keeps, so a reloaded tab finds its own outbox again; two tabs of one user on
// one document never write over each other's. Every open outbox is touched every few
// seconds; an outbox nobody touched for STALE_MS belongs to a tab that was closed
// before its edits went out, and the next tab that opens the document adopts it (its
// ops are re-sent with their ids: the server applies each id at most once).

const PREFIX = "atelier.outbox.";
const STALE_MS = 15000;
const SNAP = ".snapshot";

function tabId() {
  let id = sessionStorage.getItem("atelier.tab");
  if (!id) {
    id = Math.random().toString(36).slice(2, 10);
    sessionStorage.setItem("atelier.tab", id);
  }
  return id;
}

function read(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export class Outbox {
  constructor(user, docId) {
    this.base = `${PREFIX}${user}.${docId}.`;
    this.key = this.base + tabId();
    const mine = read(this.key) || {};
    this.ops = mine.ops || [];
    this.snapshot = read(this.key + SNAP);
    this.snapTimer = null;
    this.adopt();
    this.save();
  }

  // Outboxes of closed tabs on this document: their ops join ours (oldest first).
  adopt() {
    const now = Date.now();
    const known = new Set(this.ops.map((o) => o.id));
    const stale = [];
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i);
      if (!key || !key.startsWith(this.base) || key.endsWith(SNAP) || key === this.key) continue;
      const other = read(key);
      if (other && now - (other.touched || 0) >= STALE_MS) stale.push([key, other]);
    }
    for (const [key, other] of stale) {
      const theirs = (other.ops || []).filter((o) => !known.has(o.id));
      this.ops = [...theirs, ...this.ops];
      if (!this.snapshot) this.snapshot = read(key + SNAP);
      localStorage.removeItem(key);
      localStorage.removeItem(key + SNAP);
    }
  }

  // The ops are written at once, every time they change: a reload right after an edit
  // still finds it.
  save() {
    try {
      localStorage.setItem(this.key, JSON.stringify({ touched: Date.now(), ops: this.ops }));
    } catch {
      /* over the quota: the ops stay in memory */
    }
  }

  set(ops) {
    this.ops = ops.map(({ id, op }) => ({ id, op }));
    this.save();
  }

  // The confirmed state, a head start for a reload (offline too): written at most once
  // a second. Any snapshot is consistent with any later list of ops: a reload resumes
  // from its v, and the events after it remove the ops already committed.
  keepSnapshot(state) {
    this.snapshot = state;
    if (this.snapTimer) return;
    this.snapTimer = setTimeout(() => this.writeSnapshot(), 1000);
  }

  writeSnapshot() {
    clearTimeout(this.snapTimer);
    this.snapTimer = null;
    if (!this.snapshot) return;
    try {
      localStorage.setItem(this.key + SNAP, JSON.stringify(this.snapshot));
    } catch {
      localStorage.removeItem(this.key + SNAP); // too large to keep: only a head start
    }
  }

  // Closed cleanly: keep what is left to send, and the snapshot it applies on.
  drop() {
    if (this.ops.length === 0) {
      clearTimeout(this.snapTimer);
      localStorage.removeItem(this.key);
      localStorage.removeItem(this.key + SNAP);
    } else {
      this.save();
      this.writeSnapshot();
    }
  }
}
