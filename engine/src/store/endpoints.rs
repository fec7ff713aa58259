//! Endpoints: where an app's events go, through which plugin, signed with
//! which secret. Deleted endpoints are kept (soft delete) so their deliveries'
//! history stays readable.
//!
//! The credentials of a row (URL, secrets, plugin configuration) are sealed
//! on the way in and opened on the way out by a [`Sealer`], so every
//! function that reads or writes them takes one; see [`super::sealed`].

use diesel::prelude::*;

use super::schema::endpoints;
use super::sealed::Sealer;
use super::{Conn, StoreError};

/// An endpoint row. `plugin_config`, `filter_types`, `retry_schedule` and
/// `rate_limit` are JSON text. The policy columns are `None` for "the
/// engine's default"; the health columns are written by the delivery side
/// (`delivery::health`) in the same transaction as the outcome that moved them.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = endpoints)]
pub struct Endpoint {
    pub id: String,
    pub app_id: String,
    pub url: String,
    pub description: String,
    pub plugin: String,
    pub plugin_config: String,
    pub filter_types: String,
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    // Policy.
    pub retry_schedule: Option<String>,
    pub max_in_flight: Option<i32>,
    pub rate_limit: Option<String>,
    pub ordered: bool,
    #[diesel(embed)]
    pub health: Health,
    /// The secret the last rotation replaced, valid until
    /// `previous_secret_expires_at`: requests carry both signatures.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    /// A CEL expression events must satisfy (`crate::payload_filter`);
    /// `None` matches every event.
    pub filter: Option<String>,
    /// When the CloudEvents validation handshake last succeeded for this
    /// URL; `None` when the endpoint did not opt in.
    pub handshake_at: Option<i64>,
    /// The rate the receiver allowed in the handshake, per minute.
    pub handshake_rate: Option<i32>,
}

impl Endpoint {
    /// The secrets that sign a request at `now`: the current one, and the
    /// one a rotation replaced while its overlap lasts.
    pub fn signing_secrets(&self, now: i64) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at)
            && now < until
        {
            out.push(previous);
        }
        out
    }
}

impl Endpoint {
    /// The row as stored: its credentials sealed.
    fn sealed(&self, sealer: &Sealer) -> Endpoint {
        let mut row = self.clone();
        row.url = sealer.seal(&self.url, "url", &self.id);
        row.secret = sealer.seal(&self.secret, "secret", &self.id);
        row.plugin_config = sealer.seal(&self.plugin_config, "plugin_config", &self.id);
        row.previous_secret = self
            .previous_secret
            .as_deref()
            .map(|s| sealer.seal(s, "previous_secret", &self.id));
        row
    }

    /// The row as loaded, its credentials opened.
    fn opened(mut self, sealer: &Sealer) -> Result<Endpoint, StoreError> {
        let open = |stored: &str, column: &str| {
            sealer
                .open(stored, column, &self.id)
                .map_err(|e| StoreError::Sealed(format!("endpoint {} {column}: {e}", self.id)))
        };
        let url = open(&self.url, "url")?;
        let secret = open(&self.secret, "secret")?;
        let plugin_config = open(&self.plugin_config, "plugin_config")?;
        let previous_secret = self
            .previous_secret
            .as_deref()
            .map(|s| open(s, "previous_secret"))
            .transpose()?;
        self.url = url;
        self.secret = secret;
        self.plugin_config = plugin_config;
        self.previous_secret = previous_secret;
        Ok(self)
    }

    /// Whether any credential is not stored the way `sealer` writes it.
    fn needs_reseal(&self, sealer: &Sealer) -> bool {
        [&self.url, &self.secret, &self.plugin_config]
            .into_iter()
            .chain(&self.previous_secret)
            .any(|stored| sealer.needs_reseal(stored))
    }
}

fn open_all(rows: Vec<Endpoint>, sealer: &Sealer) -> Result<Vec<Endpoint>, StoreError> {
    rows.into_iter().map(|row| row.opened(sealer)).collect()
}

/// Opens the rows of a bulk read (fan-out, claims, health), leaving out
/// any that do not open, so that one bad row cannot stop every app's
/// deliveries. The start-up check refuses such rows; one can only appear
/// here if the file was changed under a running engine.
fn open_usable(rows: Vec<Endpoint>, sealer: &Sealer) -> Vec<Endpoint> {
    rows.into_iter()
        .filter_map(|row| match row.opened(sealer) {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::error!(error = %e, "endpoint left out: its credentials do not open");
                None
            }
        })
        .collect()
}

// Never print secrets.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("url", &"<redacted>")
            .field("plugin", &self.plugin)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A new endpoint with default policy and a clean bill of health.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        app_id: String,
        url: String,
        description: String,
        plugin: String,
        plugin_config: String,
        filter_types: String,
        secret: String,
        now: i64,
    ) -> Endpoint {
        Endpoint {
            id,
            app_id,
            url,
            description,
            plugin,
            plugin_config,
            filter_types,
            secret,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            retry_schedule: None,
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            health: Health::default(),
            previous_secret: None,
            previous_secret_expires_at: None,
            filter: None,
            handshake_at: None,
            handshake_rate: None,
        }
    }
}

/// An endpoint's health: its circuit breaker and its current failure streak.
#[derive(Debug, Clone, PartialEq, Eq, Default, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = endpoints, treat_none_as_null = true)]
pub struct Health {
    pub breaker_state: i16,
    pub breaker_trips: i32,
    pub breaker_opened_at: Option<i64>,
    pub breaker_retry_at: Option<i64>,
    pub consecutive_failures: i32,
    pub failing_since: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Writes an endpoint's health.
pub fn set_health(conn: &mut Conn, id: &str, health: &Health) -> Result<(), StoreError> {
    diesel::update(endpoints::table.find(id))
        .set(health)
        .execute(conn)?;
    Ok(())
}

/// The fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = endpoints)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub plugin: Option<String>,
    pub plugin_config: Option<String>,
    pub filter_types: Option<String>,
    pub secret: Option<String>,
    pub enabled: Option<bool>,
    pub disabled_reason: Option<Option<String>>,
    pub updated_at: Option<i64>,
    pub retry_schedule: Option<Option<String>>,
    pub max_in_flight: Option<Option<i32>>,
    pub rate_limit: Option<Option<String>>,
    pub ordered: Option<bool>,
    pub filter: Option<Option<String>>,
    pub handshake_at: Option<Option<i64>>,
    pub handshake_rate: Option<Option<i32>>,
}

impl EndpointChanges {
    /// The changes as stored: credentials sealed for row `id`.
    fn sealed(&self, sealer: &Sealer, id: &str) -> EndpointChanges {
        let seal =
            |value: &Option<String>, column| value.as_deref().map(|v| sealer.seal(v, column, id));
        EndpointChanges {
            url: seal(&self.url, "url"),
            plugin_config: seal(&self.plugin_config, "plugin_config"),
            secret: seal(&self.secret, "secret"),
            description: self.description.clone(),
            plugin: self.plugin.clone(),
            filter_types: self.filter_types.clone(),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason.clone(),
            updated_at: self.updated_at,
            retry_schedule: self.retry_schedule.clone(),
            max_in_flight: self.max_in_flight,
            rate_limit: self.rate_limit.clone(),
            ordered: self.ordered,
            filter: self.filter.clone(),
            handshake_at: self.handshake_at,
            handshake_rate: self.handshake_rate,
        }
    }
}

/// Makes `secret` current; the one it replaces stays valid until `until`.
pub fn rotate_secret(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
    id: &str,
    secret: &str,
    until: i64,
    now: i64,
) -> Result<Endpoint, StoreError> {
    let current = get(conn, sealer, app_id, id)?;
    diesel::update(endpoints::table.find(id))
        .set((
            endpoints::previous_secret.eq(Some(sealer.seal(
                &current.secret,
                "previous_secret",
                id,
            ))),
            endpoints::previous_secret_expires_at.eq(Some(until)),
            endpoints::secret.eq(sealer.seal(secret, "secret", id)),
            endpoints::updated_at.eq(now),
        ))
        .execute(conn)?;
    get(conn, sealer, app_id, id)
}

pub fn insert(conn: &mut Conn, sealer: &Sealer, endpoint: &Endpoint) -> Result<(), StoreError> {
    diesel::insert_into(endpoints::table)
        .values(&endpoint.sealed(sealer))
        .execute(conn)?;
    Ok(())
}

/// A live (not deleted) endpoint of the app.
pub fn get(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
    id: &str,
) -> Result<Endpoint, StoreError> {
    endpoints::table
        .filter(endpoints::id.eq(id))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .select(Endpoint::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("endpoint", id))?
        .opened(sealer)
}

/// Whether a live endpoint `id` of the app exists (credentials untouched).
pub fn exists(conn: &mut Conn, app_id: &str, id: &str) -> Result<(), StoreError> {
    endpoints::table
        .filter(endpoints::id.eq(id))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .select(endpoints::id)
        .first::<String>(conn)
        .optional()?
        .map(|_| ())
        .ok_or_else(|| StoreError::not_found("endpoint", id))
}

/// The app's live endpoints in id order, after `cursor` when given.
pub fn list(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<Endpoint>, StoreError> {
    let mut query = endpoints::table
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .select(Endpoint::as_select())
        .order(endpoints::id)
        .limit(limit)
        .into_boxed();
    if let Some(cursor) = cursor {
        query = query.filter(endpoints::id.gt(cursor.to_string()));
    }
    open_all(query.load(conn)?, sealer)
}

/// The app's endpoints that receive new events: live and enabled.
pub fn receiving(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
) -> Result<Vec<Endpoint>, StoreError> {
    let rows = endpoints::table
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .filter(endpoints::enabled.eq(true))
        .select(Endpoint::as_select())
        .load(conn)?;
    Ok(open_usable(rows, sealer))
}

/// Endpoints by id, deleted or not (the dispatcher decides what to do).
pub fn by_ids(conn: &mut Conn, sealer: &Sealer, ids: &[&str]) -> Result<Vec<Endpoint>, StoreError> {
    let rows = endpoints::table
        .filter(endpoints::id.eq_any(ids))
        .select(Endpoint::as_select())
        .load(conn)?;
    Ok(open_usable(rows, sealer))
}

/// What an update changed beyond its fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toggled {
    /// The operator disabled it (its deliveries are now held).
    pub disabled: bool,
    /// The operator enabled it (its held deliveries resumed).
    pub enabled: bool,
}

/// Applies `changes`. Disabling holds the endpoint's pending deliveries;
/// enabling resumes its held ones and gives it a clean bill of health;
/// changing the ordering re-marks its unfinished deliveries.
pub fn update(
    conn: &mut Conn,
    sealer: &Sealer,
    app_id: &str,
    id: &str,
    changes: &EndpointChanges,
    now: i64,
) -> Result<(Endpoint, Toggled), StoreError> {
    use super::deliveries::{self, HoldKind};
    let before = get(conn, sealer, app_id, id)?;
    let target = endpoints::table
        .filter(endpoints::id.eq(id))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null());
    let n = diesel::update(target)
        .set(&changes.sealed(sealer, id))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::not_found("endpoint", id));
    }
    let mut toggled = Toggled::default();
    let after = get(conn, sealer, app_id, id)?;
    if before.enabled && !after.enabled {
        let reason = after.disabled_reason.as_deref().unwrap_or("disabled");
        deliveries::hold_for_endpoint(conn, id, &format!("endpoint disabled: {reason}"))?;
        toggled.disabled = true;
    }
    if !before.enabled && after.enabled {
        set_health(conn, id, &Health::default())?;
        deliveries::resume_held(conn, &[id.to_string()], HoldKind::Endpoint, now)?;
        toggled.enabled = true;
    }
    if before.ordered != after.ordered {
        deliveries::set_ordered(conn, id, after.ordered)?;
    }
    Ok((get(conn, sealer, app_id, id)?, toggled))
}

/// Disables an endpoint with a reason (a plugin's or the engine's verdict)
/// and holds its pending deliveries. Returns false when it was already
/// disabled (nothing changed).
pub fn disable(conn: &mut Conn, id: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
    let n = diesel::update(
        endpoints::table
            .find(id)
            .filter(endpoints::enabled.eq(true)),
    )
    .set((
        endpoints::enabled.eq(false),
        endpoints::disabled_reason.eq(Some(reason)),
        endpoints::updated_at.eq(now),
    ))
    .execute(conn)?;
    if n > 0 {
        super::deliveries::hold_for_endpoint(conn, id, &format!("endpoint disabled: {reason}"))?;
    }
    Ok(n > 0)
}

/// Endpoints by id whose plugin is `plugin`.
pub fn using_plugin(conn: &mut Conn, plugin: &str) -> Result<Vec<String>, StoreError> {
    Ok(endpoints::table
        .filter(endpoints::plugin.eq(plugin))
        .filter(endpoints::deleted_at.is_null())
        .select(endpoints::id)
        .load(conn)?)
}

/// The live endpoints of one app that use `plugin`.
pub fn using_plugin_in_app(
    conn: &mut Conn,
    plugin: &str,
    app_id: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(endpoints::table
        .filter(endpoints::plugin.eq(plugin))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null())
        .select(endpoints::id)
        .load(conn)?)
}

pub fn soft_delete(conn: &mut Conn, app_id: &str, id: &str, now: i64) -> Result<(), StoreError> {
    let target = endpoints::table
        .filter(endpoints::id.eq(id))
        .filter(endpoints::app_id.eq(app_id))
        .filter(endpoints::deleted_at.is_null());
    let n = diesel::update(target)
        .set((
            endpoints::deleted_at.eq(Some(now)),
            endpoints::updated_at.eq(now),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::not_found("endpoint", id));
    }
    super::deliveries::fail_for_deleted_endpoint(conn, id, now)?;
    Ok(())
}

/// What [`reseal_all`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// Endpoints (deleted ones included) in the store.
    pub endpoints: usize,
    /// Of those, the ones whose credentials were rewritten.
    pub rewritten: usize,
    /// Of those, the ones that had a credential in the clear and now have
    /// none (encryption was turned on).
    pub sealed_from_plain: usize,
}

/// Checks that every endpoint's credentials open, and rewrites those not
/// stored the way `sealer` writes them: sealing plain ones when a key is
/// set, moving ones sealed with a previous key to the current one, opening
/// sealed ones when encryption is turned off. Stops at the first value
/// that does not open (a missing key, an altered value), naming it; the
/// caller's transaction then leaves everything as it was.
pub fn reseal_all(conn: &mut Conn, sealer: &Sealer) -> Result<Resealed, StoreError> {
    let rows: Vec<Endpoint> = endpoints::table
        .select(Endpoint::as_select())
        .order(endpoints::id)
        .load(conn)?;
    let mut done = Resealed {
        endpoints: rows.len(),
        ..Resealed::default()
    };
    for row in rows {
        if !row.needs_reseal(sealer) {
            row.opened(sealer)?;
            continue;
        }
        let had_plain = [&row.url, &row.secret, &row.plugin_config]
            .into_iter()
            .chain(&row.previous_secret)
            .any(|stored| super::sealed::stored_key_id(stored).is_none());
        if had_plain && sealer.current_key_id().is_some() {
            done.sealed_from_plain += 1;
        }
        let row = row.opened(sealer)?.sealed(sealer);
        diesel::update(endpoints::table.find(&row.id))
            .set((
                endpoints::url.eq(&row.url),
                endpoints::secret.eq(&row.secret),
                endpoints::plugin_config.eq(&row.plugin_config),
                endpoints::previous_secret.eq(&row.previous_secret),
            ))
            .execute(conn)?;
        done.rewritten += 1;
    }
    Ok(done)
}

/// How the stored credentials are kept: values per key id (`None`: plain).
pub fn sealing_census(
    conn: &mut Conn,
) -> Result<std::collections::BTreeMap<Option<String>, usize>, StoreError> {
    let rows: Vec<(String, String, String, Option<String>)> = endpoints::table
        .select((
            endpoints::url,
            endpoints::secret,
            endpoints::plugin_config,
            endpoints::previous_secret,
        ))
        .load(conn)?;
    let mut census = std::collections::BTreeMap::new();
    for (url, secret, config, previous) in &rows {
        for stored in [Some(url), Some(secret), Some(config), previous.as_ref()]
            .into_iter()
            .flatten()
        {
            let key = super::sealed::stored_key_id(stored).map(str::to_string);
            *census.entry(key).or_insert(0) += 1;
        }
    }
    Ok(census)
}

/// Endpoints not deleted, counted by breaker state (for `/metrics`).
pub fn count_by_breaker_state(conn: &mut Conn) -> Result<Vec<(i16, i64)>, StoreError> {
    Ok(endpoints::table
        .filter(endpoints::deleted_at.is_null())
        .group_by(endpoints::breaker_state)
        .select((endpoints::breaker_state, diesel::dsl::count_star()))
        .load(conn)?)
}
