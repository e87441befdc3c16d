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
        /// The configuration file (lb.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Seconds between counter reports.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
    },
    /// Validate a configuration file and exit: 0 when valid, 1 with the errors otherwise.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run one VRRP instance (keepalived's `vrrp_instance` keywords as flags) until SIGINT or
    /// SIGTERM, then send priority 0 and remove the virtual addresses.
    Vrrp(Box<balancer::vrrp::command::VrrpArgs>),
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
        Command::Run { config, interval } => runtime().and_then(|rt| {
            rt.block_on(balancer::run::run(
                &config,
                Duration::from_secs_f64(interval),
            ))
            .map_err(anyhow::Error::from)
        }),
        Command::Vrrp(args) => runtime().and_then(|rt| {
            rt.block_on(balancer::vrrp::command::run(&args))
                .map_err(anyhow::Error::from)
        }),
        Command::Check { config } => balancer::config::Config::load(&config)
            .map(|_| println!("{}: valid", config.display()))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balancer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
