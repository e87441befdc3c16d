//! `balancer run`: attach the data plane to the configured interfaces and report until stopped.

use std::{path::Path, time::Duration};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::{Config, ConfigError},
    dataplane::xdp::{ProtoCounters, XdpError, XdpProgram},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error("installing the {signal} handler")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
}

/// Loads `config_path`, attaches the XDP program and logs counter deltas every `interval` until
/// SIGINT or SIGTERM, then detaches from every interface.
///
/// # Errors
/// The configuration is invalid, or loading, attaching or detaching failed. On an attach failure
/// the interfaces attached so far are detached again.
pub async fn run(config_path: &Path, interval: Duration) -> Result<(), RunError> {
    let config = Config::load(config_path)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| RunError::Signal {
        signal: "SIGINT",
        source,
    })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| RunError::Signal {
        signal: "SIGTERM",
        source,
    })?;

    let mut program = XdpProgram::load()?;
    for interface in &config.xdp.interfaces {
        // On error `program` drops here, which detaches the interfaces already attached.
        let mode = program.attach(interface, config.xdp.mode)?;
        tracing::info!(interface, %mode, "XDP program attached");
    }

    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let mut last = program.proto_counters()?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = program.proto_counters()?;
                report(&now.since(&last), interval);
                last = now;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("stopping: detaching from every interface");
    program.detach_all()?;
    Ok(())
}

fn report(delta: &ProtoCounters, interval: Duration) {
    let secs = interval.as_secs_f64();
    let fields: Vec<String> = delta
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(c, v)| {
            #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
            let rate = v as f64 / secs;
            format!("{}={v} ({rate:.0}/s)", c.name())
        })
        .collect();
    if fields.is_empty() {
        tracing::info!("no packets in the last {secs:.1}s");
    } else {
        tracing::info!("{}", fields.join(" "));
    }
}
