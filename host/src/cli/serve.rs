//! `ferry serve`: starts the service and the HTTP API, serves until SIGINT
//! or SIGTERM, then stops gracefully.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::Notify;

use crate::api::{self, HttpLimits, Tokens, auth};
use crate::config::{Config, NbdTlsMode};
use crate::service::{Service, ServiceOptions};
use crate::{fdlimit, private_fs};

/// How long requests in flight may take to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(10);

/// `ferry serve` options (the data directory is the global `--data-dir`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Address of the NBD server that exports attached volumes.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10809")]
    nbd_listen: SocketAddr,
    /// Configuration file (TOML); the embedded default (arrays t1, v1, v2,
    /// p1) when absent.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs the server; returns when it has stopped.
pub fn run(args: ServeArgs, data_dir: PathBuf) -> ExitCode {
    // Files are created private explicitly; the umask also covers anything
    // a dependency creates on its own.
    private_fs::restrict_umask();
    init_tracing();
    match serve(args, &data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A subscriber may already be set when embedded; keep that one.
    // Colours only for a person at a terminal, and never under NO_COLOR.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

fn serve(args: ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    // Checked before anything is created in it: a fresh directory is 0700.
    // (`Service::start` logs the same through tracing, for embedders.)
    if let Ok(Some(mode)) = private_fs::open_to_others(data_dir) {
        eprintln!(
            "warning: the data directory {} has mode {mode:04o}: other users may read the \
             volumes' data, the store and the tokens; chmod 700 it",
            data_dir.display()
        );
    }
    let tokens = Tokens::load_or_create(data_dir)?;
    let http_limits = http_limits(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_async(args, data_dir, config, tokens, http_limits))
}

/// The HTTP limits of `config`, with the connection cap lowered if the
/// process's descriptor limit (raised to its hard limit first) would leave
/// too few for NBD connections and LUN files.
fn http_limits(config: &Config) -> HttpLimits {
    let mut limits = HttpLimits::from_config(&config.http);
    match fdlimit::raise_nofile_limit() {
        Ok(nofile) => {
            let cap = fdlimit::http_connection_cap(config.http.max_connections, nofile);
            if cap < config.http.max_connections {
                tracing::warn!(
                    configured = config.http.max_connections,
                    max_connections = cap,
                    open_file_limit = nofile,
                    reserved = fdlimit::RESERVED,
                    "fewer HTTP connections than configured, to keep descriptors for NBD and \
                     LUN files; raise the open file limit (ulimit -n) to allow more"
                );
            }
            limits.max_connections = usize::try_from(cap).unwrap_or(limits.max_connections);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the open file limit"),
    }
    limits
}

async fn serve_async(
    args: ServeArgs,
    data_dir: &Path,
    config: Config,
    tokens: Tokens,
    http_limits: HttpLimits,
) -> anyhow::Result<()> {
    // Bind first: a busy port should fail before the store is opened.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let http_addr = listener.local_addr().context("listener address")?;
    config
        .cinder
        .check_listen(http_addr)
        .map_err(anyhow::Error::msg)?;
    let api_options = api::ApiOptions::from_config(&config);
    let opts = ServiceOptions {
        data_dir: data_dir.to_owned(),
        config,
        nbd_listen: args.nbd_listen,
    };
    // Opening the store and compiling drivers blocks; keep it off the
    // async workers.
    let service = tokio::task::spawn_blocking(move || Service::start(opts))
        .await
        .context("service start-up panicked")??;
    let nbd_addr = service.nbd_addr();

    let nbd_tls = service.nbd_tls();
    let tls_note = match nbd_tls {
        NbdTlsMode::Off => "",
        NbdTlsMode::On => ", tls on",
        NbdTlsMode::Required => ", tls required",
    };
    println!(
        "ferry serving http://{http_addr} (nbd {nbd_addr}{tls_note}), admin token in {}",
        auth::admin_token_path(data_dir).display()
    );
    if !http_addr.ip().is_loopback() {
        eprintln!(
            "warning: the API listens on {http_addr}, beyond this host; it speaks plain HTTP, \
             so bearer tokens cross the network unencrypted"
        );
    }
    if !nbd_addr.ip().is_loopback() {
        if nbd_tls != NbdTlsMode::Required {
            eprintln!(
                "warning: NBD listens on {nbd_addr}, beyond this host, and accepts plaintext: \
                 export names (the secrets that open volumes) and data cross the network \
                 unencrypted; set [nbd] tls = \"required\" with tls_cert and tls_key"
            );
        }
        eprintln!(
            "warning: NBD listens on {nbd_addr}, beyond this host; NBD has no other \
             authentication, so anyone who can reach it and knows an export name can use that \
             volume"
        );
    }

    let stop = Arc::new(Notify::new());
    let signalled = stop.clone();
    let app = api::app_with(service.clone(), tokens, api_options);
    let stopping = service.clone();
    let server = api::server::serve(listener, app, http_limits, async move {
        shutdown_signal().await;
        tracing::info!("stopping: finishing requests in flight");
        stopping.begin_shutdown();
        signalled.notify_one();
    });
    let result = tokio::select! {
        r = server => r.context("HTTP server failed"),
        () = async { stop.notified().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("requests still running after {DRAIN:?}; stopping anyway");
            Ok(())
        }
    };
    let svc = service.clone();
    tokio::task::spawn_blocking(move || svc.shutdown())
        .await
        .context("service shutdown panicked")?;
    tracing::info!("stopped");
    result
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
