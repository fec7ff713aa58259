"""A Hookline plugin in Python: sends each event to an ntfy topic.

ntfy (https://ntfy.sh, or a self-hosted server) publishes a plain-text POST
to a topic URL as a push notification; `Title`, `Tags` and `Priority`
headers shape it. The endpoint's URL is the topic URL, for example
`https://ntfy.sh/my-alerts`.

Config (all optional):
  {"priority": 1-5, "tags": ["warning", ...], "title_prefix": "shop"}

Built with componentize-py against the WIT in `sdk/wit/v0.1` (see README.md).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types

# ntfy's message limit is 4,096 bytes; longer bodies become attachments.
MAX_MESSAGE = 4096

CONFIG_SCHEMA = {
    "type": "object",
    "properties": {
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}},
        "title_prefix": {"type": "string"},
    },
    "additionalProperties": False,
}


def parse_config(text: str) -> dict:
    """The endpoint's config, checked; raises Err(BadConfig) naming the option."""
    try:
        config = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise Err(types.PluginError_BadConfig(f"config is not JSON: {e}"))
    if not isinstance(config, dict):
        raise Err(types.PluginError_BadConfig("config must be a JSON object"))
    for key in config:
        if key not in CONFIG_SCHEMA["properties"]:
            raise Err(types.PluginError_BadConfig(f"{key}: unknown option"))
    priority = config.get("priority")
    if priority is not None and (
        not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 5
    ):
        raise Err(types.PluginError_BadConfig("priority: must be an integer from 1 to 5"))
    tags = config.get("tags")
    if tags is not None and (
        not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags)
    ):
        raise Err(types.PluginError_BadConfig("tags: must be a list of non-empty strings"))
    prefix = config.get("title_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise Err(types.PluginError_BadConfig("title_prefix: must be a string"))
    return config


def header_safe(text: str) -> str:
    """ntfy reads headers as UTF-8, but HTTP headers cannot hold line breaks."""
    return " ".join(text.split())[:250]


def cut(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "..."


class WitWorld(wit_world.WitWorld):
    def info(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="ntfy-python",
            version="1.0.0",
            description="Push notifications through ntfy topics (a Python example plugin)",
            config_schema=json.dumps(CONFIG_SCHEMA),
        )

    def validate_config(self, config: str) -> None:
        parse_config(config)

    def transform(self, event: types.Event, config: str) -> list[types.Request]:
        options = parse_config(config)
        try:
            data = json.loads(event.data)
        except ValueError:
            raise Err(types.PluginError_BadEvent("data is not JSON"))
        title = event.subject or event.type
        if options.get("title_prefix"):
            title = f"{options['title_prefix']}: {title}"
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            message = data["message"]
        else:
            message = json.dumps(data, indent=2, ensure_ascii=False)
        message = f"{message}\n\n{event.type} from {event.source} at {event.time}"
        headers = [("title", header_safe(title))]
        if options.get("priority"):
            headers.append(("priority", str(options["priority"])))
        if options.get("tags"):
            headers.append(("tags", header_safe(",".join(options["tags"]))))
        host.log(host.Level.DEBUG, f"ntfy message for {event.id}: {len(message)} characters")
        return [
            types.Request(
                body=cut(message, MAX_MESSAGE).encode("utf-8"),
                content_type="text/plain; charset=utf-8",
                headers=headers,
                query=None,
            )
        ]

    def interpret_response(self, response: types.Response, config: str) -> types.Verdict | None:
        # ntfy answers 429 with a JSON body when a visitor's quota runs out.
        if response.status == 429:
            return types.Verdict_RetryAfter(60)
        # 413: the message is too large for this server; sending it again will not help.
        if response.status == 413:
            return types.Verdict_Fail("ntfy refused the message as too large")
        return None
