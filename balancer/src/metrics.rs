//! Prometheus metrics: the daemon's [`Status`] in the text exposition format (version 0.0.4),
//! served over HTTP when the configuration gives a listen address (off by default).

use std::{convert::Infallible, fmt::Write as _, net::SocketAddr};

use http_body_util::Full;
use hyper::{Request as HttpRequest, Response as HttpResponse, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    control::{Incoming, Request},
    status::{Status, endpoint, scheduler_name},
};

/// The VRRP states a `balancer_vrrp_state` series exists for.
const VRRP_STATES: [&str; 4] = ["INIT", "BACKUP", "MASTER", "FAULT"];

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

/// The whole exposition for one status.
#[must_use]
#[expect(clippy::too_many_lines, reason = "one family after another, in order")]
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.head(
        "balancer_config_generation",
        "gauge",
        "Configurations applied since start (1 + successful reloads).",
    );
    f.sample("balancer_config_generation", &[], status.generation);
    f.head(
        "balancer_config_last_reload_failed",
        "gauge",
        "1 when the last reload was refused and the previous configuration still runs.",
    );
    let failed = status
        .last_reload
        .as_ref()
        .is_some_and(|r| r.error.is_some());
    f.sample("balancer_config_last_reload_failed", &[], u8::from(failed));
    f.head(
        "balancer_flows",
        "gauge",
        "Live entries in the connection table at the last sweep.",
    );
    f.sample("balancer_flows", &[], status.flows);
    f.head(
        "balancer_flow_capacity",
        "gauge",
        "Size of the connection table.",
    );
    f.sample("balancer_flow_capacity", &[], status.flow_capacity);
    f.head(
        "balancer_flow_misses_total",
        "counter",
        "TCP segments other than SYNs that found no flow: evicted from a full table, expired, or opened through another node.",
    );
    f.sample("balancer_flow_misses_total", &[], status.flow_misses);

    f.head(
        "balancer_frames_total",
        "counter",
        "Frames seen by the XDP program, by what it did and why.",
    );
    for (reason, n) in &status.reasons {
        f.sample("balancer_frames_total", &[("reason", reason)], n);
    }

    for (metric, help) in [
        (
            "balancer_service_connections_total",
            "New connections scheduled by the service.",
        ),
        (
            "balancer_service_packets_total",
            "Packets forwarded for the service.",
        ),
        (
            "balancer_service_bytes_total",
            "Bytes forwarded for the service.",
        ),
    ] {
        f.head(metric, "counter", help);
        for s in &status.services {
            let value = match metric {
                "balancer_service_connections_total" => s.counters.conns,
                "balancer_service_packets_total" => s.counters.packets,
                _ => s.counters.bytes,
            };
            f.sample(
                metric,
                &[
                    ("service", &s.name),
                    ("scheduler", scheduler_name(s.scheduler)),
                ],
                value,
            );
        }
    }
    for (metric, kind, help) in [
        (
            "balancer_real_connections_total",
            "counter",
            "New connections scheduled to the real.",
        ),
        (
            "balancer_real_packets_total",
            "counter",
            "Packets forwarded to the real.",
        ),
        (
            "balancer_real_bytes_total",
            "counter",
            "Bytes forwarded to the real.",
        ),
        (
            "balancer_real_weight",
            "gauge",
            "The real's weight in the data plane (0 drains).",
        ),
        (
            "balancer_real_active_connections",
            "gauge",
            "Connections not closing (ipvsadm ActiveConn).",
        ),
        (
            "balancer_real_inactive_connections",
            "gauge",
            "Closing connections still in the table (ipvsadm InActConn).",
        ),
    ] {
        f.head(metric, kind, help);
        for s in &status.services {
            for r in s.reals.iter().chain(&s.sorry_server) {
                let value = match metric {
                    "balancer_real_connections_total" => r.counters.conns,
                    "balancer_real_packets_total" => r.counters.packets,
                    "balancer_real_bytes_total" => r.counters.bytes,
                    "balancer_real_weight" => u64::from(r.weight),
                    "balancer_real_active_connections" => r.active,
                    _ => r.inactive,
                };
                f.sample(
                    metric,
                    &[("service", &s.name), ("real", &endpoint(r.addr, r.port))],
                    value,
                );
            }
        }
    }

    f.head(
        "balancer_vrrp_state",
        "gauge",
        "1 for the VRRP instance's current state.",
    );
    for v in &status.vrrp {
        for state in VRRP_STATES {
            f.sample(
                "balancer_vrrp_state",
                &[("instance", &v.name), ("state", state)],
                u8::from(v.state == state),
            );
        }
    }
    f.head(
        "balancer_vrrp_priority",
        "gauge",
        "The instance's effective priority (configured plus tracker weights).",
    );
    for v in &status.vrrp {
        f.sample(
            "balancer_vrrp_priority",
            &[("instance", &v.name)],
            v.priority,
        );
    }
    f.head(
        "balancer_vrrp_transitions_total",
        "counter",
        "Times the instance became master, and gave mastership up.",
    );
    for v in &status.vrrp {
        f.sample(
            "balancer_vrrp_transitions_total",
            &[("instance", &v.name), ("to", "master")],
            v.become_master,
        );
        f.sample(
            "balancer_vrrp_transitions_total",
            &[("instance", &v.name), ("to", "backup")],
            v.release_master,
        );
    }
    f.head(
        "balancer_checker_up",
        "gauge",
        "1 while the checker passes.",
    );
    for c in &status.checkers {
        let real = endpoint(c.real, c.port);
        f.sample(
            "balancer_checker_up",
            &[
                ("service", &c.service),
                ("real", &real),
                ("checker", &c.checker),
            ],
            u8::from(c.up),
        );
    }
    out
}

/// Serves `GET /metrics` on `listen`, asking the daemon for its status per scrape.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    listen: SocketAddr,
    requests: mpsc::Sender<Incoming>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(%listen, "Prometheus metrics served at /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: HttpRequest<hyper::body::Incoming>| {
                    let requests = requests.clone();
                    async move { Ok::<_, Infallible>(scrape(&req, &requests).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

async fn scrape(
    req: &HttpRequest<hyper::body::Incoming>,
    requests: &mpsc::Sender<Incoming>,
) -> HttpResponse<Full<Bytes>> {
    let reply = |code: u16, content_type: &str, body: String| {
        HttpResponse::builder()
            .status(code)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.uri().path() != "/metrics" {
        return reply(404, "text/plain", "metrics are at /metrics\n".into());
    }
    let (tx, rx) = oneshot::channel();
    if requests.send((Request::Status, tx)).await.is_err() {
        return reply(503, "text/plain", "the daemon is stopping\n".into());
    }
    match rx.await {
        Ok(response) => match response.status {
            Some(status) => reply(200, "text/plain; version=0.0.4", render(&status)),
            None => reply(
                500,
                "text/plain",
                format!("{}\n", response.error.unwrap_or_default()),
            ),
        },
        Err(_) => reply(503, "text/plain", "the daemon is stopping\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Method, Protocol, Scheduler},
        status::{Counters, Rates, RealStatus, ServiceStatus, VrrpStatus},
    };

    #[test]
    fn every_family_is_typed_and_samples_carry_escaped_labels() {
        let status = Status {
            generation: 3,
            flows: 9,
            flow_capacity: 1024,
            reasons: vec![("tx_dr".into(), 41)],
            services: vec![ServiceStatus {
                name: "TCP 198.18.0.10:80".into(),
                protocol: Protocol::Tcp,
                vips: vec!["198.18.0.10".parse().unwrap()],
                port: 80,
                scheduler: Scheduler::Wrr,
                persistence: None,
                ops: false,
                counters: Counters {
                    conns: 5,
                    packets: 41,
                    bytes: 4100,
                },
                rates: Rates::default(),
                reals: vec![RealStatus {
                    addr: "fd00::2".parse().unwrap(),
                    port: 80,
                    method: Method::Dr,
                    weight: 0,
                    active: 2,
                    inactive: 1,
                    counters: Counters::default(),
                    rates: Rates::default(),
                }],
                sorry_server: None,
            }],
            vrrp: vec![VrrpStatus {
                name: "VI_\"1\"".into(),
                interface: "eth0".into(),
                vrid: 51,
                version: 3,
                state: "MASTER".into(),
                priority: 150,
                configured_priority: 150,
                master: None,
                since: 0,
                why: String::new(),
                become_master: 2,
                release_master: 1,
            }],
            ..Status::default()
        };
        let text = render(&status);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE line"
            );
        }
        assert!(text.contains("balancer_config_generation 3\n"));
        assert!(text.contains("balancer_frames_total{reason=\"tx_dr\"} 41\n"));
        assert!(text.contains(
            "balancer_service_packets_total{service=\"TCP 198.18.0.10:80\",scheduler=\"wrr\"} 41\n"
        ));
        assert!(text.contains(
            "balancer_real_weight{service=\"TCP 198.18.0.10:80\",real=\"[fd00::2]:80\"} 0\n"
        ));
        assert!(text.contains(
            "balancer_real_active_connections{service=\"TCP 198.18.0.10:80\",real=\"[fd00::2]:80\"} 2\n"
        ));
        assert!(
            text.contains("balancer_vrrp_state{instance=\"VI_\\\"1\\\"\",state=\"MASTER\"} 1\n")
        );
        assert!(
            text.contains("balancer_vrrp_state{instance=\"VI_\\\"1\\\"\",state=\"BACKUP\"} 0\n")
        );
        assert!(text.contains(
            "balancer_vrrp_transitions_total{instance=\"VI_\\\"1\\\"\",to=\"master\"} 2\n"
        ));
    }
}
