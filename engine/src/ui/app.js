// The Hookline dashboard: a small page over the JSON API, with the API key
// the operator signs in with (kept in this tab's session storage). Every
// value from the API is put in the page as text, never as HTML.
"use strict";

const KEY = "hookline.key";
const view = () => document.getElementById("view");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "onclick") node.addEventListener("click", value);
    else if (name === "onsubmit") node.addEventListener("submit", value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function state(text) {
  return el("span", { class: "state " + String(text) }, text ?? "-");
}

function cell(value) {
  if (value === null || value === undefined || value === "") return "-";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "-";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

async function api(method, path, body) {
  const options = { method, headers: { authorization: "Bearer " + sessionStorage.getItem(KEY) } };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    signOut("The key was not accepted.");
    throw new Error("unauthorized");
  }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : response.statusText;
    throw new Error(response.status + " " + message);
  }
  return data;
}

function table(columns, rows, rowId) {
  return el("table", {},
    el("thead", {}, el("tr", {}, columns.map(([title]) => el("th", {}, title)))),
    el("tbody", {}, rows.map((row) =>
      el("tr", rowId ? { "data-id": rowId(row) } : {}, columns.map(([, render]) => el("td", {}, render(row)))))));
}

function show(...nodes) {
  view().replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
}

function failure(error) {
  if (error.message !== "unauthorized") show(el("p", { class: "error", id: "error" }, String(error.message)));
}

// A bar chart of successful and failed attempts per span of the window.
function chart(series) {
  const width = 240, height = 40, bar = width / series.length;
  const top = Math.max(1, ...series.map((b) => b.success + b.failed));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const ground = document.createElementNS("http://www.w3.org/2000/svg", "rect");
  ground.setAttribute("class", "ground");
  ground.setAttribute("width", width);
  ground.setAttribute("height", height);
  svg.append(ground);
  series.forEach((b, i) => {
    const ok = (b.success / top) * height, bad = (b.failed / top) * height;
    for (const [kind, h, y] of [["success", ok, height - ok], ["failed", bad, height - ok - bad]]) {
      if (h <= 0) continue;
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      rect.setAttribute("class", kind);
      rect.setAttribute("x", i * bar + 1);
      rect.setAttribute("y", y);
      rect.setAttribute("width", Math.max(1, bar - 2));
      rect.setAttribute("height", h);
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = `${b.start}: ${b.success} delivered, ${b.failed} failed`;
      rect.append(title);
      svg.append(rect);
    }
  });
  return svg;
}

async function appsView() {
  const apps = await api("GET", "/v1/apps?limit=250");
  show(el("h1", {}, "Apps"),
    table([
      ["App", (a) => el("a", { href: "#/apps/" + encodeURIComponent(a.id) }, a.name)],
      ["Id", (a) => el("span", { class: "mono" }, a.id)],
      ["Created", (a) => a.created_at],
    ], apps.data, (a) => a.id));
}

async function appView(appId) {
  const app = await api("GET", `/v1/apps/${encodeURIComponent(appId)}`);
  const endpoints = await api("GET", `/v1/apps/${encodeURIComponent(appId)}/endpoints?limit=250`);
  const stats = await Promise.all(endpoints.data.map((e) =>
    api("GET", `/v1/apps/${encodeURIComponent(appId)}/endpoints/${encodeURIComponent(e.id)}/stats?window=24h`)));
  const byId = Object.fromEntries(stats.map((s) => [s.endpoint_id, s]));
  const notice = el("p", { class: "notice", id: "notice", hidden: "" });
  const recover = (e) => async () => {
    const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
    try {
      const op = await api("POST", `/v1/apps/${encodeURIComponent(appId)}/endpoints/${encodeURIComponent(e.id)}/recover`, { since });
      notice.textContent = `Recovering ${op.total} failed deliveries of ${e.id} (operation ${op.id}).`;
    } catch (error) {
      notice.textContent = String(error.message);
    }
    notice.hidden = false;
  };
  const test = (e) => async () => {
    try {
      const sent = await api("POST", `/v1/apps/${encodeURIComponent(appId)}/endpoints/${encodeURIComponent(e.id)}/test`, {});
      const a = sent.attempt;
      notice.replaceChildren("Test delivery ",
        el("a", { href: "#/deliveries/" + encodeURIComponent(sent.delivery.id), class: "mono" }, sent.delivery.id), ": ",
        a ? `${a.outcome}${a.status_code ? " (" + a.status_code + ")" : ""}${a.error ? " — " + a.error : ""}` : "not attempted yet (held back)");
    } catch (error) {
      notice.textContent = String(error.message);
    }
    notice.hidden = false;
  };
  show(el("h1", {}, app.name, " ", el("span", { class: "mono" }, app.id)), notice,
    el("h2", {}, "Endpoints"),
    table([
      ["Endpoint", (e) => el("a", { href: `#/deliveries?endpoint_id=${encodeURIComponent(e.id)}` }, e.url)],
      ["Plugin", (e) => e.plugin],
      ["Enabled", (e) => (e.enabled ? "yes" : "no")],
      ["Breaker", (e) => state(e.health.breaker)],
      ["Success (24 h)", (e) => {
        const rate = byId[e.id] && byId[e.id].success_rate;
        return rate === null || rate === undefined ? "-" : (rate * 100).toFixed(1) + " %";
      }],
      ["Last 24 h", (e) => (byId[e.id] ? chart(byId[e.id].series) : "-")],
      ["Last error", (e) => cell(e.health.last_error)],
      ["", (e) => [el("button", { type: "button", class: "test", onclick: test(e) }, "Send test"), " ",
        el("button", { type: "button", class: "recover", onclick: recover(e) }, "Recover failed")]],
    ], endpoints.data, (e) => e.id));
}

async function deliveriesView(query) {
  const params = new URLSearchParams(query);
  params.set("limit", "100");
  const list = await api("GET", "/v1/deliveries?" + params.toString());
  const status = el("select", { name: "status", id: "search-status" },
    ["", "pending", "delivered", "failed", "held"].map((s) => {
      const option = el("option", { value: s }, s || "any status");
      if (s === (params.get("status") || "")) option.setAttribute("selected", "");
      return option;
    }));
  const endpoint = el("input", { name: "endpoint_id", id: "search-endpoint", placeholder: "ep_…", value: params.get("endpoint_id") || "" });
  const type = el("input", { name: "event_type", id: "search-type", placeholder: "order.created", value: params.get("event_type") || "" });
  const search = el("form", {
    class: "search", onsubmit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const input of [status, endpoint, type]) if (input.value) next.set(input.name, input.value);
      location.hash = "#/deliveries?" + next.toString();
    },
  }, el("label", {}, "Status", status), el("label", {}, "Endpoint", endpoint), el("label", {}, "Event type", type),
  el("button", { type: "submit", id: "search", class: "primary" }, "Search"));
  show(el("h1", {}, "Deliveries"), search,
    list.data.length === 0 ? el("p", { id: "no-deliveries" }, "No deliveries match.") :
      table([
        ["Delivery", (d) => el("a", { href: "#/deliveries/" + encodeURIComponent(d.id), class: "mono" }, d.id)],
        ["Status", (d) => state(d.status)],
        ["Attempts", (d) => d.attempts],
        ["Type", (d) => d.event_type],
        ["Endpoint", (d) => el("span", { class: "mono" }, d.endpoint_id)],
        ["Created", (d) => d.created_at],
        ["Last error", (d) => cell(d.last_error)],
      ], list.data, (d) => d.id));
}

async function deliveryView(id) {
  const delivery = await api("GET", "/v1/deliveries/" + encodeURIComponent(id));
  const attempts = await api("GET", `/v1/deliveries/${encodeURIComponent(id)}/attempts`);
  const retry = delivery.status === "failed" ? el("button", {
    type: "button", id: "retry", class: "primary", onclick: async () => {
      try {
        await api("POST", `/v1/deliveries/${encodeURIComponent(id)}/retry`, {});
        await deliveryView(id);
      } catch (error) {
        failure(error);
      }
    },
  }, "Retry now") : null;
  const fields = ["id", "status", "attempts", "event_type", "event_id", "endpoint_id", "app_id", "next_attempt_at", "last_error", "created_at", "finished_at"];
  show(el("h1", {}, "Delivery ", el("span", { class: "mono" }, delivery.id)),
    el("dl", { class: "fields" }, fields.map((f) => [el("dt", {}, f),
      el("dd", f === "status" ? { id: "delivery-status" } : {}, f === "status" ? state(delivery.status) : cell(delivery[f]))])),
    retry,
    el("button", { type: "button", id: "refresh", onclick: () => deliveryView(id).catch(failure) }, "Refresh"),
    el("h2", {}, "Attempts"),
    attempts.data.length === 0 ? el("p", {}, "No attempts yet.") :
      table([
        ["#", (a) => a.attempt],
        ["Started", (a) => a.started_at],
        ["Outcome", (a) => state(a.outcome)],
        ["Status", (a) => cell(a.status_code)],
        ["ms", (a) => a.duration_ms],
        ["Plugin", (a) => `${a.plugin.name} ${a.plugin.version}`],
        ["Response", (a) => cell(a.response_excerpt)],
        ["Error", (a) => cell(a.error)],
      ], attempts.data, (a) => String(a.attempt)));
}

async function pluginsView() {
  const plugins = await api("GET", "/v1/plugins");
  show(el("h1", {}, "Plugins"),
    table([
      ["Plugin", (p) => p.name],
      ["Version", (p) => cell(p.version)],
      ["State", (p) => state(p.state)],
      ["Source", (p) => p.source],
      ["Quarantined for", (p) => cell(p.quarantined_for)],
      ["Last error", (p) => cell(p.last_error)],
    ], plugins.data, (p) => p.name));
}

async function route() {
  if (!sessionStorage.getItem(KEY)) return signOut();
  document.getElementById("login-form").hidden = true;
  document.getElementById("nav").hidden = false;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) await appsView();
    else if (parts[0] === "apps" && parts[1]) await appView(parts[1]);
    else if (parts[0] === "deliveries" && parts[1]) await deliveryView(parts[1]);
    else if (parts[0] === "deliveries") await deliveriesView(query || "");
    else if (parts[0] === "plugins") await pluginsView();
    else show(el("p", {}, "Nothing here."));
  } catch (error) {
    failure(error);
  }
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  document.getElementById("nav").hidden = true;
  view().replaceChildren();
  document.getElementById("login-form").hidden = false;
  const error = document.getElementById("login-error");
  error.hidden = !message;
  error.textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("key").value.trim());
    route();
  });
  document.getElementById("logout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  route();
});
