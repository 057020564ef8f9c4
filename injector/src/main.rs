//! `injector`: gosight's mutating admission webhook.
//!
//! `injector serve` runs the HTTPS webhook; `injector certs` makes a CA and a
//! serving certificate and prints the `caBundle` for the webhook configuration.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use injector::certs::{generate, CertRequest};
use injector::server::{serve, ServeConfig};

/// gosight's injector: adds the gosight sidecar to opted-in pods.
#[derive(Debug, Parser)]
#[command(name = "injector", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the admission webhook over HTTPS.
    Serve(Box<ServeConfig>),
    /// Generate a CA and a serving certificate for the webhook; write ca.crt,
    /// tls.crt and tls.key into --out-dir and print the caBundle (base64 of the
    /// CA's PEM) as the last line of stdout.
    Certs {
        /// Directory to write the files into (created if needed).
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        #[command(flatten)]
        request: CertRequest,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Certs { out_dir, request } => {
            let certs = generate(&request)?;
            let paths = certs.write(&out_dir)?;
            for path in paths {
                eprintln!("injector: wrote {}", path.display());
            }
            println!("{}", certs.ca_bundle());
            Ok(())
        }
        Command::Serve(config) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(*config, shutdown_signal()))
        }
    }
}

/// Completes on SIGTERM (what the kubelet sends) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
