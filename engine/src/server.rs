//! The running engine: opens the store, loads the plugins, starts the
//! dispatcher and the HTTP API, and shuts them down in order on SIGINT or
//! SIGTERM (stop accepting, stop claiming, let deliveries in flight finish
//! up to the grace period, write their outcomes, close the store).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::delivery::sender::Sender;
use crate::delivery::{Dispatcher, Handoff, health, recovery, retention};
use crate::plugins::{self, PluginHost};
use crate::store::deliveries::HoldKind;
use crate::store::{Store, apps, deliveries, endpoints};

pub async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "failed to create data directory {}",
            config.data_dir.display()
        )
    })?;
    std::fs::create_dir_all(&config.plugins_dir).with_context(|| {
        format!(
            "failed to create plugins directory {}",
            config.plugins_dir.display()
        )
    })?;

    let store = {
        let (url, options) = (config.database.clone(), config.store.clone());
        tokio::task::spawn_blocking(move || Store::open(&url, &options)).await??
    };
    tracing::info!(database = %config.database, "store ready");
    // The app operational events are emitted into.
    store
        .write(|c| {
            if apps::get(c, health::SYSTEM_APP).is_err() {
                apps::insert(
                    c,
                    &apps::App {
                        id: health::SYSTEM_APP.into(),
                        name: "hookline (operational events)".into(),
                        created_at: crate::id::now_ms(),
                    },
                )?;
            }
            Ok(())
        })
        .await?;

    let (handoff, fresh) = Handoff::new(
        crate::id::new_id("node").into(),
        config.dispatcher.lease,
        config.dispatcher.max_in_flight * 4,
    );
    // Work other processes on the same PostgreSQL database announce wakes
    // this one's dispatcher (nothing to do on SQLite).
    {
        let handoff = handoff.clone();
        store.listen_for_work(Arc::new(move || handoff.wake.notify_one()));
    }

    let started = std::time::Instant::now();
    let host = PluginHost::new(
        config.plugin_limits.clone(),
        Some(&config.data_dir.join("plugin-cache")),
    )?;
    // When a plugin version is put in service, or its quarantine for an app
    // closes, deliveries waiting for it go now: (plugin, only this app).
    let (resume_tx, mut resume_rx) =
        tokio::sync::mpsc::unbounded_channel::<(String, Option<String>)>();
    let on_loaded: plugins::reload::OnLoaded = {
        let tx = resume_tx.clone();
        Arc::new(move |name: &str| {
            let _ = tx.send((name.to_string(), None));
        })
    };
    host.on_quarantine_change({
        let tx = resume_tx.clone();
        let runtime = tokio::runtime::Handle::current();
        Arc::new(move |name: &str, change: plugins::quarantine::Change| {
            let (tx, name) = (tx.clone(), name.to_string());
            match change {
                plugins::quarantine::Change::Closed { app } => {
                    let _ = tx.send((name, Some(app)));
                }
                // Held deliveries go again when a probe may: the first one
                // claimed takes it, the others wait for its answer.
                plugins::quarantine::Change::Opened { app, until_ms } => {
                    let wait = (until_ms - crate::id::now_ms()).max(0) as u64;
                    runtime.spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        let _ = tx.send((name, Some(app)));
                    });
                }
            }
        })
    });
    {
        let (host, dir, on_loaded) = (host.clone(), config.plugins_dir.clone(), on_loaded.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            plugins::builtin::load_all(&host)?;
            plugins::reload::load_dir(&host, &dir, &on_loaded)
                .with_context(|| format!("failed to read plugins directory {}", dir.display()))?;
            Ok(())
        })
        .await??;
    }
    let _watch = plugins::reload::watch(host.clone(), config.plugins_dir.clone(), on_loaded)?;
    let (compiled, cached) = host.load_counts();
    tracing::info!(
        plugins = ?host.registry.names(),
        compiled,
        cached,
        ms = started.elapsed().as_millis() as u64,
        "plugins ready"
    );
    // Quarantines do not outlive the process: whatever waited for a plugin
    // that is loaded now goes again.
    for name in host.registry.names() {
        let _ = resume_tx.send((name, None));
    }
    {
        let (store, handoff) = (store.clone(), handoff.clone());
        tokio::spawn(async move {
            while let Some((name, app)) = resume_rx.recv().await {
                let plugin = name.clone();
                let scope = app.clone();
                let now = crate::id::now_ms();
                match store
                    .write(move |c| {
                        let ids = match &scope {
                            Some(app) => endpoints::using_plugin_in_app(c, &plugin, app)?,
                            None => endpoints::using_plugin(c, &plugin)?,
                        };
                        deliveries::resume_held(c, &ids, HoldKind::Plugin, now)
                    })
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(plugin = %name, app = ?app, deliveries = n, "deliveries waiting for the plugin resume");
                        handoff.wake.notify_one();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "failed to resume deliveries waiting for a plugin")
                    }
                }
            }
        });
    }

    // A safety net under the messages above, and the sweep of idle warm
    // instances: every few seconds, deliveries held for a plugin that can be
    // called again for their app go (a resume may have been written before
    // the hold it was meant for, or a probe may have been lost).
    {
        let (store, host, resume_tx) = (store.clone(), host.clone(), resume_tx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                host.drop_idle();
                let Ok(holds) = store.read(deliveries::plugin_holds).await else {
                    continue;
                };
                for (app, plugin) in holds {
                    let callable = host.registry.get(&plugin).is_some_and(|p| {
                        !matches!(p.admission(&app), plugins::Admission::Wait { .. })
                    });
                    if callable {
                        let _ = resume_tx.send((plugin, Some(app)));
                    }
                }
            }
        });
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let sender = Sender::new(&config.sender, config.network.clone())?;
    let dispatcher = Dispatcher::new(
        store.clone(),
        host.clone(),
        sender.clone(),
        config.retry.clone(),
        config.health.clone(),
        config.dispatcher.clone(),
        (handoff.clone(), fresh),
    );
    let dispatcher = tokio::spawn(dispatcher.run(shutdown_rx.clone()));
    tokio::spawn(recovery::resume(store.clone(), handoff.clone()));
    let pruner = tokio::spawn(retention::run(
        store.clone(),
        config.retention.clone(),
        shutdown_rx.clone(),
    ));

    let keys =
        Arc::new(crate::auth::bootstrap(&store, &config.data_dir, config.insecure_no_auth).await?);
    if store.backend() == crate::store::Backend::Postgres {
        // Other processes on the database create and revoke keys too.
        let (store, keys) = (store.clone(), keys.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::auth::REFRESH_EVERY);
            loop {
                tick.tick().await;
                match store.read(crate::store::api_keys::all).await {
                    Ok(rows) => keys.refresh(rows),
                    Err(e) => tracing::debug!(error = %e, "could not reload API keys"),
                }
            }
        });
    }
    if config.insecure_no_auth {
        tracing::warn!("--insecure-no-auth: the API takes requests without a key (loopback only)");
    }
    let state = AppState {
        keys,
        store: store.clone(),
        host,
        handoff,
        event_limits: Arc::new(config.event_limits.clone()),
        network: config.network.clone(),
        max_body_bytes: config.max_body_bytes,
        secret_rotation_overlap: config.secret_rotation_overlap,
        sender,
        webhook_origin: config.webhook_origin.clone(),
    };
    if !config.declared.is_empty() {
        let applied = api::declared::apply(&state, &config.declared).await?;
        tracing::info!(
            created = applied.created,
            updated = applied.updated,
            unchanged = applied.unchanged,
            "applied the config file's apps and endpoints"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    // One machine-readable line on stdout: tests and scripts wait for it.
    println!("hookline listening on http://{addr}");

    let mut api_shutdown = shutdown_rx.clone();
    let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
        let _ = api_shutdown.wait_for(|stop| *stop).await;
    });
    let server = tokio::spawn(async move { server.await });

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    if let Err(e) = server.await? {
        tracing::error!(error = %e, "HTTP server error during shutdown");
    }
    dispatcher.await?;
    let _ = pruner.await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
