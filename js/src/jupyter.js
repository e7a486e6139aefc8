// The Jupyter server as seen from the page: base URL, authenticated requests
// (the page's own session: the _xsrf cookie and, when the page has one, its token),
// and the signaling URL twilio-video.js connects to.

/** JupyterLab's / Notebook's page configuration, or {} outside them. */
export function pageConfig() {
  const element = document.getElementById('jupyter-config-data');
  if (!element) { return {}; }
  try { return JSON.parse(element.textContent || '{}'); } catch (_) { return {}; }
}

/**
 * The Jupyter server's base URL (absolute, ending in "/"): the page's own server
 * when the page is JupyterLab or Notebook, else the URL the kernel found.
 */
export function serverBase(fallbackUrl) {
  const config = pageConfig();
  if (config.baseUrl) { return new URL(config.baseUrl, window.location.href).href; }
  if (fallbackUrl) { return fallbackUrl; }
  return new URL('/', window.location.href).href;
}

function cookie(name) {
  const match = document.cookie.match(new RegExp('(?:^|;\\s*)' + name + '=([^;]*)'));
  return match ? decodeURIComponent(match[1]) : null;
}

/** An error from the server: Twilio's code (or the HTTP status) and its message. */
export class ServerError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = 'ServerError';
    this.code = code;
    this.status = status;
  }
}

/**
 * A request to the Jupyter server with the page's session. ``form`` is sent
 * form-encoded (as Twilio's REST API takes parameters). Resolves to the JSON body.
 */
export async function request(base, path, { method = 'GET', form = null } = {}) {
  const headers = {};
  const xsrf = cookie('_xsrf');
  if (xsrf) { headers['X-XSRFToken'] = xsrf; }
  const token = pageConfig().token;
  if (token) { headers.Authorization = `token ${token}`; }
  let body;
  if (form) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  let response;
  try {
    response = await fetch(new URL(path, base).href, { method, headers, body, credentials: 'same-origin' });
  } catch (error) {
    throw new ServerError(53000, `The Jupyter server at ${base} cannot be reached (${error.message})`, 0);
  }
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ServerError(json.code || response.status, json.message || `${response.status} ${response.statusText}`, response.status);
  }
  return json;
}

/** ws(s)://host/base/video/signaling for a base URL. */
export function signalingUrl(base) {
  const url = new URL('video/signaling', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}
