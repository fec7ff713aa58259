// A Hookline plugin in JavaScript: sends each event as a Pushover
// notification (https://pushover.net/api).
//
// Pushover takes a form-encoded POST to https://api.pushover.net/1/messages.json
// with the application's `token`, the recipient's `user` key, a `message`
// (at most 1,024 characters) and an optional `title` (250) and `priority`.
// The endpoint's URL is that address; the keys are the endpoint's config:
//
//   {"token": "azGDORePK8gMaC0QOYAMyEEuzJnyUi", "user": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
//    "priority": 0, "sound": "cashregister"}
//
// Built with jco (componentize-js) against the WIT in `sdk/wit/v0.1`; see README.md.

import { log } from "hookline:plugin/host@0.1.0";

const MAX_MESSAGE = 1024;
const MAX_TITLE = 250;
const KEY = /^[A-Za-z0-9]{30}$/;

const CONFIG_SCHEMA = {
  type: "object",
  required: ["token", "user"],
  properties: {
    token: { type: "string", description: "the application's API token (30 characters)" },
    user: { type: "string", description: "the user or group key (30 characters)" },
    priority: { type: "integer", minimum: -2, maximum: 1 },
    sound: { type: "string" },
  },
  additionalProperties: false,
};

function badConfig(message) {
  return { tag: "bad-config", val: message };
}

// The endpoint's config, checked; throws a bad-config error naming the option.
function parseConfig(text) {
  let config;
  try {
    config = text.trim() === "" ? {} : JSON.parse(text);
  } catch (e) {
    throw badConfig(`config is not JSON: ${e.message}`);
  }
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw badConfig("config must be a JSON object");
  }
  for (const key of Object.keys(config)) {
    if (!(key in CONFIG_SCHEMA.properties)) {
      throw badConfig(`${key}: unknown option`);
    }
  }
  for (const key of ["token", "user"]) {
    if (typeof config[key] !== "string" || !KEY.test(config[key])) {
      throw badConfig(`${key}: required, 30 letters and digits`);
    }
  }
  const p = config.priority;
  if (p !== undefined && !(Number.isInteger(p) && p >= -2 && p <= 1)) {
    // Priority 2 (emergency) needs retry and expire parameters: not offered here.
    throw badConfig("priority: must be an integer from -2 to 1");
  }
  if (config.sound !== undefined && typeof config.sound !== "string") {
    throw badConfig("sound: must be a string");
  }
  return config;
}

// Cuts to `limit` characters (Pushover counts characters, not bytes).
function cut(text, limit) {
  const chars = Array.from(text);
  return chars.length <= limit ? text : chars.slice(0, limit - 1).join("") + "…";
}

export function info() {
  return {
    name: "pushover-js",
    version: "1.0.0",
    description: "Pushover notifications (a JavaScript example plugin)",
    configSchema: JSON.stringify(CONFIG_SCHEMA),
  };
}

export function validateConfig(config) {
  parseConfig(config);
}

export function transform(event, configText) {
  const config = parseConfig(configText);
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    throw { tag: "bad-event", val: "data is not JSON" };
  }
  const text =
    data !== null && typeof data === "object" && typeof data.message === "string"
      ? data.message
      : JSON.stringify(data, null, 2);
  const form = new URLSearchParams({
    token: config.token,
    user: config.user,
    title: cut(event.subject ?? event.type, MAX_TITLE),
    message: cut(`${text}\n${event.type} from ${event.source}`, MAX_MESSAGE),
    timestamp: String(Math.floor(Date.parse(event.time) / 1000) || ""),
  });
  if (config.priority !== undefined) form.set("priority", String(config.priority));
  if (config.sound !== undefined) form.set("sound", config.sound);
  log("debug", `pushover message for ${event.id}`);
  return [
    {
      body: new TextEncoder().encode(form.toString()),
      contentType: "application/x-www-form-urlencoded",
      headers: [],
      query: undefined,
    },
  ];
}

export function interpretResponse(response, _config) {
  // Pushover answers 4xx with {"status": 0, "errors": [...]} for a bad token
  // or user key: sending again will not help, and the endpoint is useless.
  if (response.status >= 400 && response.status < 500 && response.status !== 429) {
    let errors = "";
    try {
      errors = JSON.parse(new TextDecoder().decode(response.body)).errors?.join("; ") ?? "";
    } catch {
      // Not JSON: keep the status alone.
    }
    const why = `Pushover refused the message (${response.status})${errors ? ": " + errors : ""}`;
    return /token|user/.test(errors) ? { tag: "disable-endpoint", val: why } : { tag: "fail", val: why };
  }
  return undefined;
}
