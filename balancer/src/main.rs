//! The `balancer` command line.

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode, time::Duration};

use balancer::config::DataplaneKind;
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
    /// Instance name: separates the pinned state, control socket and pid file of daemons side
    /// by side (one per network namespace). Client commands talk to the same instance.
    #[arg(long, global = true, default_value = "default")]
    instance: String,
    /// Directory of the control sockets, pid files and SIGUSR1/SIGUSR2 dumps.
    #[arg(long, global = true, default_value = balancer::control::RUN_DIR)]
    run_dir: PathBuf,
    /// The control socket, for `status` and `reload`, when the configuration's `[control]
    /// socket` puts it elsewhere than `RUN_DIR/INSTANCE.sock`.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
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
        /// On stop, leave the XDP program attached and its maps pinned: it goes on forwarding
        /// established and new connections until the next run adopts it without a gap.
        #[arg(long)]
        keep_state: bool,
        /// The bpf filesystem to pin under. Under `ip netns exec` /sys is private to the
        /// process, so pins there die with it: give a bpffs mounted outside (e.g. `mount -t
        /// bpf bpf /run/balancer/bpf` beforehand) for a restart to adopt them.
        #[arg(long, default_value = balancer::run::PIN_ROOT)]
        pin_root: PathBuf,
        /// Serve Prometheus metrics at `http://ADDR/metrics` (off unless given here or in the
        /// configuration).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// `xdp` or `ipvs`, in place of the configuration's `dataplane`: a keepalived.conf
        /// runs on the kernel's IPVS, as keepalived runs it, with `--dataplane ipvs`.
        #[arg(long, value_parser = parse_dataplane)]
        dataplane: Option<DataplaneKind>,
    },
    /// Show the running daemon's services and reals as `ipvsadm -Ln` does, then its VRRP
    /// instances and checkers.
    Status {
        /// Totals: connections, packets and bytes (`ipvsadm -Ln --stats`).
        #[arg(long, conflicts_with = "rate")]
        stats: bool,
        /// Rates over the last sampling interval (`ipvsadm -Ln --rate`).
        #[arg(long)]
        rate: bool,
        /// Everything as one JSON document, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Make the running daemon load its configuration again and apply the difference (as
    /// SIGHUP does); an invalid configuration is refused and the old one keeps running.
    Reload,
    /// Validate lb.toml or keepalived.conf (our `keepalived -t`): exit 0 when valid, 1 with
    /// every error otherwise.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Check it for this data plane (`xdp` or `ipvs`) instead of its own `dataplane`.
        #[arg(long, value_parser = parse_dataplane)]
        dataplane: Option<DataplaneKind>,
    },
    /// Print the lb.toml equivalent of a keepalived.conf (or of an lb.toml, normalised).
    Convert {
        file: PathBuf,
        /// The `dataplane` of the lb.toml printed (`xdp` or `ipvs`).
        #[arg(long, value_parser = parse_dataplane)]
        dataplane: Option<DataplaneKind>,
    },
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

fn parse_dataplane(s: &str) -> Result<DataplaneKind, String> {
    match s {
        "xdp" => Ok(DataplaneKind::Xdp),
        "ipvs" => Ok(DataplaneKind::Ipvs),
        _ => Err(format!("{s:?}: expected xdp or ipvs")),
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

/// `balancer status`: asks the daemon and prints its answer.
fn status(socket: &std::path::Path, stats: bool, rate: bool, json: bool) -> anyhow::Result<()> {
    use balancer::status::{View, render_rest, render_services};
    let response = balancer::control::request(
        socket,
        balancer::control::Request::Status,
        Duration::from_secs(10),
    )?;
    let report = match (response.status, response.error) {
        (Some(s), _) => s,
        (None, e) => anyhow::bail!("the daemon answered: {}", e.unwrap_or_default()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let view = if stats {
        View::Stats
    } else if rate {
        View::Rate
    } else {
        View::List
    };
    print!("{}{}", render_services(&report, view), render_rest(&report));
    Ok(())
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
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| balancer::control::socket_path(&cli.run_dir, &cli.instance));
    let result: anyhow::Result<()> = match cli.command {
        Command::Run {
            config,
            interval,
            keep_state,
            pin_root,
            metrics,
            dataplane,
        } => daemon_runtime().and_then(|rt| {
            rt.block_on(balancer::run::run(&balancer::run::RunOptions {
                config,
                interval: Duration::from_secs_f64(interval),
                instance: cli.instance,
                keep_state,
                run_dir: cli.run_dir,
                pin_root,
                metrics,
                dataplane,
            }))
            .map_err(anyhow::Error::from)
        }),
        Command::Status { stats, rate, json } => status(&socket, stats, rate, json),
        Command::Reload => balancer::control::request(
            &socket,
            balancer::control::Request::Reload,
            Duration::from_mins(1),
        )
        .map_err(anyhow::Error::from)
        .and_then(|r| match r.error {
            None => {
                println!("{}", r.message.unwrap_or_default());
                Ok(())
            }
            Some(e) => Err(anyhow::anyhow!("reload refused: {e}")),
        }),
        Command::Vrrp(args) => runtime().and_then(|rt| {
            rt.block_on(balancer::vrrp::command::run(&args))
                .map_err(anyhow::Error::from)
        }),
        Command::Check { config, dataplane } => {
            match balancer::config::load_any_as(&config, dataplane) {
                Ok(loaded) => {
                    for w in &loaded.validated.warnings {
                        eprintln!("warning: {w}");
                    }
                    println!("{}: valid", config.display());
                    Ok(())
                }
                // As `keepalived -t`: the warnings too, not only what makes it invalid.
                Err(e) => {
                    if let balancer::config::ConfigError::Invalid { diagnostics } = &e {
                        for w in &diagnostics.1 {
                            eprintln!("warning: {w}");
                        }
                    }
                    Err(anyhow::Error::from(e))
                }
            }
        }
        Command::Config(ConfigCommand::Schema) => {
            print!("{}", balancer::config::reference::reference());
            Ok(())
        }
        Command::Convert { file, dataplane } => balancer::config::load_any_as(&file, dataplane)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The systemd unit in contrib/ runs commands this binary accepts.
    #[test]
    fn the_systemd_unit_runs_valid_commands() {
        let unit = include_str!("../../contrib/balancer.service");
        let mut checked = 0;
        for line in unit.lines() {
            let Some(command) = line
                .strip_prefix("ExecStart=")
                .or_else(|| line.strip_prefix("ExecStartPre="))
            else {
                continue;
            };
            let args: Vec<&str> = command.split_whitespace().collect();
            assert!(args[0].ends_with("/balancer"), "{line}");
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!("{line}: {e}");
            }
            checked += 1;
        }
        assert_eq!(checked, 2);
    }
}
