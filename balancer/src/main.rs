//! The `balancer` command line.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(version, about = "XDP load balancer with VRRP and health checks")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, e.g. "info" or "balancer=debug" (`RUST_LOG` syntax).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Attach the data plane to the configured interfaces and run until SIGINT or SIGTERM.
    Run {
        /// The configuration: lb.toml, or keepalived.conf as it is.
        #[arg(long, short)]
        config: PathBuf,
        /// Seconds between connection-table sweeps and counter reports.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
        /// Instance name: separates the pinned state of daemons side by side.
        #[arg(long, default_value = "default")]
        instance: String,
        /// On stop, leave the data plane's maps pinned so the next run adopts its connections.
        #[arg(long)]
        keep_state: bool,
    },
    /// Validate lb.toml or keepalived.conf (our `keepalived -t`): exit 0 when valid, 1 with
    /// every error otherwise.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the lb.toml equivalent of a keepalived.conf (or of an lb.toml, normalised).
    Convert { file: PathBuf },
    /// The configuration's reference.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run one VRRP instance (keepalived's `vrrp_instance` keywords as flags) until SIGINT or
    /// SIGTERM, then send priority 0 and remove the virtual addresses.
    Vrrp(Box<balancer::vrrp::command::VrrpArgs>),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every lb.toml key with its meaning, type and default, as commented TOML
    /// (generated from the schema the loader uses).
    Schema,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.01..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0.01 and 3600"
        )),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `balancer run`'s runtime: two workers, so a long connection-table sweep on one never
/// delays a VRRP advert on the other (a late advert is a failover).
fn daemon_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let result: anyhow::Result<()> = match cli.command {
        Command::Run {
            config,
            interval,
            instance,
            keep_state,
        } => daemon_runtime().and_then(|rt| {
            rt.block_on(balancer::run::run(&balancer::run::RunOptions {
                config,
                interval: Duration::from_secs_f64(interval),
                instance,
                keep_state,
            }))
            .map_err(anyhow::Error::from)
        }),
        Command::Vrrp(args) => runtime().and_then(|rt| {
            rt.block_on(balancer::vrrp::command::run(&args))
                .map_err(anyhow::Error::from)
        }),
        Command::Check { config } => balancer::config::load_any(&config)
            .map(|loaded| {
                for w in &loaded.validated.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}: valid", config.display());
            })
            .map_err(anyhow::Error::from),
        Command::Config(ConfigCommand::Schema) => {
            print!("{}", balancer::config::reference::reference());
            Ok(())
        }
        Command::Convert { file } => balancer::config::load_any(&file)
            .map_err(anyhow::Error::from)
            .and_then(|loaded| {
                for w in &loaded.validated.warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", loaded.config.to_toml()?);
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balancer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
