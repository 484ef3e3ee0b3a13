// The HTTP API of PROTOCOL.md section 5, with the bearer token.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async call(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, data?.code ?? "error", data?.message ?? response.statusText);
    }
    return data;
  }

  documents(limit = 100) { return this.call("GET", `/api/documents?limit=${limit}`); }
  createDocument(title) { return this.call("POST", "/api/documents", { title }); }
  document(id, at) {
    const q = at == null ? "" : `?at=${at}`;
    return this.call("GET", `/api/documents/${encodeURIComponent(id)}${q}`);
  }
  activity(id, limit = 30) { return this.call("GET", `/api/documents/${encodeURIComponent(id)}/activity?limit=${limit}`); }
  versions(id) { return this.call("GET", `/api/documents/${encodeURIComponent(id)}/versions`); }
  nameVersion(id, name) { return this.call("POST", `/api/documents/${encodeURIComponent(id)}/versions`, { name }); }
  restore(id, v) { return this.call("POST", `/api/documents/${encodeURIComponent(id)}/restore`, { v }); }
  setMember(id, user, role) {
    return this.call("PUT", `/api/documents/${encodeURIComponent(id)}/members/${encodeURIComponent(user)}`, { role });
  }
  removeMember(id, user) {
    return this.call("DELETE", `/api/documents/${encodeURIComponent(id)}/members/${encodeURIComponent(user)}`);
  }
}

// Sign-in in development mode: the server signs a token for a name.
export async function devToken(name) {
  const user = name.trim().replace(/[^A-Za-z0-9_.@-]/g, "_").slice(0, 64) || "guest";
  const r = await fetch(`/api/dev/token?user=${encodeURIComponent(user)}&name=${encodeURIComponent(name.trim())}`);
  const data = await r.json();
  if (!r.ok) throw new ApiError(r.status, data.code, data.message);
  return data.token;
}

// The claims of a token (not verified here: the server does that).
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}
