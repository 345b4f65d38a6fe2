// The admin HTTP API of one stamp: JSON in and out, a bearer token on every call.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `The admin API answered ${status}.`);
    this.status = status;
    this.code = body?.error || "http_error";
    this.problems = Array.isArray(body?.problems) ? body.problems : [];
    this.body = body || {};
  }
}

export class AdminApi {
  constructor(baseUrl, auth) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.auth = auth;
  }

  url(path) {
    return `${this.baseUrl}/api/admin/${path.replace(/^\/+/, "")}`;
  }

  /** fetch() with the admin's token; one retry with a fresh token on 401. */
  async fetch(path, { method = "GET", body, etag, accept = "application/json" } = {}) {
    const send = async (forceRefresh) => {
      const headers = { Accept: accept, Authorization: `Bearer ${await this.auth.accessToken({ forceRefresh })}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (etag) headers["If-Match"] = etag;
      return fetch(this.url(path), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    };
    let resp = await send(false);
    if (resp.status === 401) resp = await send(true);
    return resp;
  }

  /** The parsed JSON answer, or an ApiError carrying the API's error body. */
  async request(path, options) {
    const resp = await this.fetch(path, options);
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  get = (path) => this.request(path);
  post = (path, body) => this.request(path, { method: "POST", body });
  put = (path, body, etag) => this.request(path, { method: "PUT", body, etag });
  patch = (path, body, etag) => this.request(path, { method: "PATCH", body, etag });
  delete = (path, etag) => this.request(path, { method: "DELETE", etag });
}
