//! The command line of the commands that talk to a running engine over its
//! API: `apps`, `endpoints`, `events`, `deliveries`, `operations`, `keys`
//! and `plugin list|lift`. Each group takes the connection flags, which
//! apply to every command under it (so no argument below may be named
//! `url`, `key` or `output`: clap would take one for the other).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and field lists for people.
    Table,
    /// The API's JSON answer, for scripts.
    Json,
}

/// Where the engine is and how to get in.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The engine's base URL.
    #[arg(
        long,
        global = true,
        env = "HOOKLINE_URL",
        default_value = "http://127.0.0.1:4665"
    )]
    pub url: String,
    /// An API key (`hlk_…`). Without one, only an engine started with
    /// --insecure-no-auth answers.
    #[arg(long, global = true, env = "HOOKLINE_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// `table` for people, `json` for scripts (the API's answer as it is).
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        env = "HOOKLINE_OUTPUT",
        default_value = "table"
    )]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct Apps {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: AppsAction,
}

#[derive(Debug, Subcommand)]
pub enum AppsAction {
    /// List the apps.
    List(ListArgs),
    /// Create an app.
    Create {
        /// A name people recognise it by.
        name: String,
    },
    /// Show one app.
    Show { app: String },
}

/// Paging of a list.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Most rows to show (the API's page size; at most 250).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// The page after this cursor (the `next_cursor` of a JSON answer).
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Args)]
pub struct Endpoints {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: EndpointsAction,
}

/// An endpoint of an app.
#[derive(Debug, Clone, Args)]
pub struct EndpointRef {
    /// The app's id.
    pub app: String,
    /// The endpoint's id.
    pub endpoint: String,
}

/// Fields of an endpoint that `add` and `update` set.
#[derive(Debug, Clone, Default, Args)]
pub struct EndpointFields {
    /// The plugin that shapes its requests (`webhook`, `slack`, `discord`, …).
    #[arg(long)]
    pub plugin: Option<String>,
    /// The plugin's config: JSON text, or `@file.json`.
    #[arg(long)]
    pub config: Option<String>,
    /// An event type it receives, exact (`order.created`) or a prefix
    /// (`order.*`); repeat for more. None: every type.
    #[arg(long = "filter-type")]
    pub filter_types: Vec<String>,
    /// A payload filter, a CEL expression over `event` and `data`.
    #[arg(long)]
    pub filter: Option<String>,
    /// What it is for.
    #[arg(long)]
    pub description: Option<String>,
    /// Any other field of the API's endpoint object, as JSON text or
    /// `@file.json` (e.g. `{"rate_limit": {"per_second": 5}}`); the flags
    /// above win over it.
    #[arg(long)]
    pub json: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EndpointsAction {
    /// List an app's endpoints with their health.
    List {
        app: String,
        #[command(flatten)]
        page: ListArgs,
    },
    /// Add an endpoint to an app (its signing secret is in the answer).
    Add {
        app: String,
        /// Where its requests go.
        #[arg(id = "endpoint_url", value_name = "URL")]
        url: String,
        #[command(flatten)]
        fields: EndpointFields,
        /// Its signing secret (`whsec_…`, `whsk_…`) [default: generated].
        #[arg(long)]
        secret: Option<String>,
        /// The scheme of a generated secret: `hmac` or `ed25519`.
        #[arg(long)]
        signature: Option<String>,
        /// Run the CloudEvents validation handshake with the receiver first.
        #[arg(long)]
        handshake: bool,
    },
    /// Show one endpoint, its settings and health.
    Show(EndpointRef),
    /// Change an endpoint's fields.
    Update {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// A new URL for it (`--url` is the engine's).
        #[arg(long = "new-url", id = "new_url")]
        url: Option<String>,
        #[command(flatten)]
        fields: EndpointFields,
    },
    /// Let an endpoint receive again (its held deliveries go).
    Enable(EndpointRef),
    /// Stop sending to an endpoint; its deliveries are held, not dropped.
    Disable(EndpointRef),
    /// Remove an endpoint.
    Remove(EndpointRef),
    /// Show an endpoint's signing secret.
    Secret(EndpointRef),
    /// Give an endpoint a new secret; the old one keeps signing for the
    /// engine's rotation overlap.
    RotateSecret {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// The new secret [default: generated].
        #[arg(long)]
        secret: Option<String>,
    },
    /// Requeue an endpoint's failed deliveries created since a time.
    Recover {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// RFC 3339 (`2026-12-01T00:00:00Z`), or how long ago (`6h`, `2d`).
        #[arg(long)]
        since: String,
    },
    /// Send a test event through the endpoint's plugin and show the attempt.
    Test {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// A CloudEvent (JSON file, or `-` for stdin); attributes left out
        /// are defaulted [default: a `hookline.test` event].
        #[arg(long)]
        event: Option<PathBuf>,
    },
    /// An endpoint's attempts over a window: outcomes, success rate,
    /// latency percentiles, queue and health.
    Stats {
        #[command(flatten)]
        endpoint: EndpointRef,
        /// How far back: `1h`, `24h`, `7d` (at most `30d`).
        #[arg(long, default_value = "24h")]
        window: String,
    },
}

#[derive(Debug, Args)]
pub struct Events {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: EventsAction,
}

#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Emit events into an app: from a file (one event, an array, or one
    /// event per line), from stdin (`-`), or from flags.
    Emit {
        app: String,
        /// A JSON file of events, or `-` for stdin.
        file: Option<PathBuf>,
        /// The event's type (without a file).
        #[arg(long = "type", conflicts_with = "file")]
        event_type: Option<String>,
        /// The event's source [default: `hookline-cli`].
        #[arg(long, conflicts_with = "file")]
        source: Option<String>,
        /// The event's id [default: a fresh one].
        #[arg(long, conflicts_with = "file")]
        id: Option<String>,
        /// The event's subject.
        #[arg(long, conflicts_with = "file")]
        subject: Option<String>,
        /// The event's data, JSON text or `@file.json`.
        #[arg(long, conflicts_with = "file")]
        data: Option<String>,
        /// Events per request when sending a file.
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
    /// Show a stored event.
    Show { event: String },
    /// Fan an event out again to the endpoints that match it now.
    Replay { event: String },
}

#[derive(Debug, Args)]
pub struct Deliveries {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: DeliveriesAction,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// List deliveries, newest first.
    List {
        /// Of this app.
        #[arg(long)]
        app: Option<String>,
        /// To this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// Of this event.
        #[arg(long)]
        event: Option<String>,
        /// `pending`, `delivered`, `failed` or `held`.
        #[arg(long)]
        status: Option<String>,
        /// Of this event type.
        #[arg(long = "type")]
        event_type: Option<String>,
        #[command(flatten)]
        page: ListArgs,
    },
    /// Show a delivery and its attempts.
    Show { delivery: String },
    /// Send a failed delivery again now, with a fresh schedule.
    Retry { delivery: String },
}

#[derive(Debug, Args)]
pub struct Operations {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: OperationsAction,
}

#[derive(Debug, Subcommand)]
pub enum OperationsAction {
    /// An app's retries, recoveries and replays.
    List {
        app: String,
        #[command(flatten)]
        page: ListArgs,
    },
    /// One operation and its progress.
    Show { operation: String },
}

#[derive(Debug, Args)]
pub struct Keys {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// List API keys (never the keys themselves).
    List,
    /// Create a key; it is shown this once.
    Create {
        /// What the key is for.
        name: String,
        /// Limit the key to this app [default: an admin key].
        #[arg(long)]
        app: Option<String>,
    },
    /// Revoke a key.
    Revoke {
        /// The key's id (`hookline keys list`).
        #[arg(id = "key_id", value_name = "ID")]
        key: String,
    },
}
