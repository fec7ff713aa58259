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
use crate::delivery::{Dispatcher, Handoff};
use crate::plugins::{self, PluginHost};
use crate::store::Store;

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
        let (path, options) = (config.database.clone(), config.store.clone());
        tokio::task::spawn_blocking(move || Store::open_sqlite(&path, &options)).await??
    };
    tracing::info!(database = %config.database.display(), "store ready");

    let host = PluginHost::new(config.plugin_limits.clone())?;
    {
        let (host, dir) = (host.clone(), config.plugins_dir.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            plugins::builtin::load_all(&host)?;
            plugins::directory::load_all(&host, &dir)
                .with_context(|| format!("failed to read plugins directory {}", dir.display()))?;
            Ok(())
        })
        .await??;
    }
    tracing::info!(plugins = ?host.registry.names(), "plugins ready");

    let (handoff, fresh) = Handoff::new(
        crate::id::new_id("node").into(),
        config.dispatcher.lease,
        config.dispatcher.max_in_flight * 4,
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let dispatcher = Dispatcher::new(
        store.clone(),
        host.clone(),
        Sender::new(&config.sender)?,
        config.retry.clone(),
        config.dispatcher.clone(),
        (handoff.clone(), fresh),
    );
    let dispatcher = tokio::spawn(dispatcher.run(shutdown_rx.clone()));

    let state = AppState {
        store: store.clone(),
        host,
        handoff,
        event_limits: Arc::new(config.event_limits.clone()),
        max_body_bytes: config.max_body_bytes,
    };
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
