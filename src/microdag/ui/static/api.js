// The client of the server's JSON API.
import {missing} from './dom.js';

export class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

/** Calls the JSON API: resolves with the parsed body, rejects with an ApiError. */
export async function api(method, path, body) {
  const init = {method, credentials: 'same-origin', headers: {Accept: 'application/json'}};
  if (method !== 'GET') {
    init.headers['X-Microdag'] = '1';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `Cannot reach the microdag server (${err.message})`, null);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const message = data && typeof data.error === 'string' ? data.error
      : `${res.status} ${res.statusText || 'error'}`;
    throw new ApiError(res.status, message, data);
  }
  return data;
}

export const enc = encodeURIComponent;
export const runUrl = (id) => '/api/runs/' + enc(id);
export const flowUrl = (path) => '/api/flows/' + enc(path);
export const stepUrl = (path, step) => `${flowUrl(path)}/steps/${enc(step)}`;
export const itemQuery = (item) => (missing(item) ? '' : '?item=' + enc(item));

let schemaPromise = null;
/** The flow-file JSON Schema, fetched once. */
export function loadSchema() {
  if (!schemaPromise) {
    schemaPromise = api('GET', '/api/schema').catch((err) => {
      schemaPromise = null; // try again next time
      throw err;
    });
  }
  return schemaPromise;
}
