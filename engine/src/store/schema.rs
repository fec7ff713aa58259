//! The diesel schema, kept in step with `migrations/sqlite` by hand.

diesel::table! {
    apps (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    endpoints (id) {
        id -> Text,
        app_id -> Text,
        url -> Text,
        description -> Text,
        plugin -> Text,
        plugin_config -> Text,
        filter_types -> Text,
        secret -> Text,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
        retry_schedule -> Nullable<Text>,
        max_in_flight -> Nullable<Integer>,
        rate_limit -> Nullable<Text>,
        ordered -> Bool,
        breaker_state -> SmallInt,
        breaker_trips -> Integer,
        breaker_opened_at -> Nullable<BigInt>,
        breaker_retry_at -> Nullable<BigInt>,
        consecutive_failures -> Integer,
        failing_since -> Nullable<BigInt>,
        last_success_at -> Nullable<BigInt>,
        last_failure_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        previous_secret -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<BigInt>,
        filter -> Nullable<Text>,
        handshake_at -> Nullable<BigInt>,
        handshake_rate -> Nullable<Integer>,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        app_id -> Text,
        source -> Text,
        ce_id -> Text,
        event_type -> Text,
        subject -> Nullable<Text>,
        time -> Text,
        data -> Text,
        extensions -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        app_id -> Text,
        event_id -> Text,
        endpoint_id -> Text,
        event_type -> Text,
        status -> SmallInt,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        finished_at -> Nullable<BigInt>,
        hold_kind -> SmallInt,
        schedule_start -> Integer,
        requests_done -> Integer,
        ordered -> Bool,
    }
}

diesel::table! {
    attempts (id) {
        id -> Text,
        delivery_id -> Text,
        attempt -> Integer,
        started_at -> BigInt,
        duration_ms -> BigInt,
        outcome -> SmallInt,
        status_code -> Nullable<Integer>,
        response_excerpt -> Nullable<Text>,
        error -> Nullable<Text>,
        plugin_name -> Text,
        plugin_version -> Text,
        plugin_hash -> Text,
    }
}

diesel::table! {
    operations (id) {
        id -> Text,
        app_id -> Text,
        kind -> Text,
        target -> Text,
        params -> Text,
        state -> Text,
        total -> Integer,
        done -> Integer,
        cursor -> Nullable<Text>,
        error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        app_id -> Nullable<Text>,
        hash -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Queried through `store::flow` (raw SQL: upserts with conditions).
    endpoint_rates (endpoint_id) {
        endpoint_id -> Text,
        next_at -> BigInt,
    }
}

diesel::table! {
    endpoint_slots (endpoint_id, delivery_id) {
        endpoint_id -> Text,
        delivery_id -> Text,
        lease_until -> BigInt,
    }
}

diesel::joinable!(endpoints -> apps (app_id));
diesel::joinable!(api_keys -> apps (app_id));
diesel::joinable!(operations -> apps (app_id));
diesel::joinable!(deliveries -> events (event_id));
diesel::joinable!(deliveries -> endpoints (endpoint_id));
diesel::joinable!(attempts -> deliveries (delivery_id));
diesel::allow_tables_to_appear_in_same_query!(
    apps, endpoints, events, deliveries, attempts, operations, api_keys
);
