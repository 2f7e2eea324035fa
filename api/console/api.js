// The HTTP API, as the CLI uses it. The token lives only in this tab's
// sessionStorage and travels only in the Authorization header.

const KEY = 'sagaplane.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A refusal from the API, with its problem+json body. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && typeof problem === 'object' ? problem.detail || problem.title : String(problem || '');
    super(`${status}: ${detail}`);
    this.status = status;
    this.problem = problem && typeof problem === 'object' ? problem : { detail };
  }
}

/** Calls the API; resolves to `{data, etag}`, throws ApiError on a refusal. */
export async function api(path, { method = 'GET', body, ifMatch } = {}) {
  const headers = { accept: 'application/json' };
  const t = token.get();
  if (t) headers.authorization = `Bearer ${t}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (ifMatch) headers['if-match'] = ifMatch;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, etag: response.headers.get('etag') };
}

/** `/v1/...?a=b` from a path and the non-empty entries of `params`. */
export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

let types = null;
/** `GET /v1/saga-types`, once per page load. */
export async function sagaTypes() {
  if (!types) types = api('/v1/saga-types').then((r) => r.data).catch((e) => { types = null; throw e; });
  return types;
}
