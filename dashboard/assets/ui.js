// duro dashboard: DOM helpers, the API client and the confirmation dialog.
"use strict";

// h builds an element: h("a", {href: "#"}, "text", child). Strings become
// text nodes, never HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the page's CSP
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// fmtTime renders an RFC 3339 time in local time, to the millisecond.
function fmtTime(s) {
  if (!s) return "–";
  const d = new Date(s);
  if (isNaN(d)) return s;
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// fmtDuration renders milliseconds for people.
function fmtDuration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return "–";
  if (ms < 1) return "<1ms";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)}s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)}m${Math.round((ms % 60000) / 1000)}s`;
  return `${Math.floor(ms / 3600000)}h${Math.round((ms % 3600000) / 60000)}m`;
}

// fmtBytes renders a size in bytes for people, as the CLI does: 812 B,
// 293.0 KiB, 2.0 MiB.
function fmtBytes(n) {
  if (!n) return "0 B";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

// preview renders a JSON payload on one line, cut to n characters.
function preview(v, n = 80) {
  if (v === undefined) return "";
  let s = JSON.stringify(v);
  if (s.length > n) s = s.slice(0, n - 1) + "…";
  return s;
}

function pretty(v) {
  return v === undefined ? "" : JSON.stringify(v, null, 2);
}

function statusBadge(status) {
  return h("span", {class: `badge status-${(status || "").toLowerCase()}`, dataset: {status}}, status);
}

// toast shows a short message at the bottom of the page.
function toast(msg, isError) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.className = "toast" + (isError ? " error" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 4000);
}

// ApiError is an error response of the API.
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const api = {
  token: sessionStorage.getItem("duro.token") || "",

  setToken(t) {
    this.token = t;
    if (t) sessionStorage.setItem("duro.token", t);
    else sessionStorage.removeItem("duro.token");
  },

  // call sends a request and returns the decoded JSON answer, or throws an
  // ApiError.
  async call(method, path, body) {
    const headers = {"Accept": "application/json"};
    if (this.token) headers["Authorization"] = "Bearer " + this.token;
    const init = {method, headers};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "network", "the server does not answer: " + e.message);
    }
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(res.status, err.code || "http_" + res.status, err.message || res.statusText);
    }
    return data;
  },

  get(path) { return this.call("GET", path); },
  post(path, body) { return this.call("POST", path, body === undefined ? {} : body); },
};

function instancePath(id) {
  return "/api/v1/instances/" + encodeURIComponent(id);
}

// dialog opens the modal dialog. opts: title, body (nodes), ok (label),
// danger (bool), onOK (async function returning nothing, or throwing to
// keep the dialog open with the error). It resolves true when done.
const dialog = {
  open(opts) {
    const d = document.getElementById("dialog");
    document.getElementById("dialog-title").textContent = opts.title;
    const body = document.getElementById("dialog-body");
    body.replaceChildren(...[].concat(opts.body || []));
    const err = document.getElementById("dialog-error");
    err.hidden = true;
    const ok = document.getElementById("dialog-ok");
    ok.textContent = opts.ok || "OK";
    ok.className = opts.danger ? "danger" : "primary";
    ok.disabled = false;
    dialog.busy = true;
    return new Promise((resolve) => {
      const form = document.getElementById("dialog-form");
      const cancel = document.getElementById("dialog-cancel");
      const done = (v) => {
        form.onsubmit = null;
        cancel.onclick = null;
        d.oncancel = null;
        d.close();
        dialog.busy = false;
        resolve(v);
      };
      cancel.onclick = () => done(false);
      d.oncancel = (e) => { e.preventDefault(); done(false); };
      form.onsubmit = async (e) => {
        e.preventDefault();
        ok.disabled = true;
        try {
          await opts.onOK();
          done(true);
        } catch (e2) {
          err.textContent = e2.message;
          err.hidden = false;
          ok.disabled = false;
        }
      };
      d.showModal();
      const first = body.querySelector("input, textarea, select");
      (first || ok).focus();
    });
  },
  busy: false,
};

// field returns a labelled input (or textarea with rows).
function field(label, attrs, rows) {
  const input = rows ? h("textarea", {rows, ...attrs}) : h("input", {type: "text", ...attrs});
  return h("label", {class: "field"}, h("span", {}, label), input);
}

// parseValue reads a payload textarea: JSON as it is, plain text as a
// string, undefined when empty. Text that starts like JSON (with {, [ or
// ") but is not valid JSON is an error, not a string: it is a typo.
function parseValue(el, what) {
  const r = readValue(el.value);
  if (r.error) throw new Error(`${what} ${r.error}`);
  return r.value;
}

// readValue is parseValue's rule: {value} or {error}.
function readValue(text) {
  const s = text.trim();
  if (!s) return {value: undefined};
  try {
    return {value: JSON.parse(s)};
  } catch (e) {
    if (/^[\[{"]/.test(s)) {
      return {error: "starts like JSON but is not valid JSON: check its quotes, commas and brackets (plain text is sent as a string)."};
    }
    return {value: s};
  }
}

// valueField is a textarea for a payload, with a line under it saying what
// will be sent: the JSON value, or the text as a JSON string.
function valueField(label, attrs, rows) {
  const f = field(label, attrs, rows);
  const ta = f.querySelector("textarea");
  const hint = h("small", {class: "value-hint muted", id: attrs.id ? attrs.id + "-hint" : undefined});
  const update = () => {
    const r = readValue(ta.value);
    hint.classList.toggle("error", !!r.error);
    hint.textContent = r.error ? "Not valid JSON: check its quotes, commas and brackets." :
      r.value === undefined ? "" : typeof r.value === "string" && !/^\s*"/.test(ta.value) ?
        "Plain text: sent as the JSON string " + preview(r.value, 60) : "Sent as JSON: " + preview(r.value, 60);
  };
  ta.addEventListener("input", update);
  f.append(hint);
  setTimeout(update); // after the caller fills it in
  return f;
}
