//! `cargo xtask bench control`: how long a change takes to reach the XDP program's maps:
//! `apply` of an mh service and `set_weight` of one of its reals (what a checker's decision
//! costs), for 10, 100 and 1,000 reals. Each figure is the median of 21 runs.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use balancer::{
    dataplane::{
        Dataplane,
        xdp::{LoadOptions, XdpProgram},
    },
    model::{Egress, Method, Protocol, RealServer, Scheduler, VirtualService},
};

const RUNS: usize = 21;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn service(reals: u32, weight: u32) -> VirtualService {
    VirtualService {
        vips: vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100))],
        port: 80,
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Mh,
        ops: false,
        hash_port: false,
        persistence: None,
        reals: (0..reals)
            .map(|i| RealServer {
                addr: IpAddr::V4(Ipv4Addr::from(0xc612_1000 + i)),
                port: 80,
                weight,
                method: Method::Dr,
                tunnel_source: None,
                egress: Some(Egress {
                    ifindex: 1,
                    dmac: [2, 0, 0, 0, 0, 1],
                    smac: [2, 0, 0, 0, 0, 2],
                }),
            })
            .collect(),
        sorry_server: None,
    }
}

pub fn run() {
    let mut prog = XdpProgram::load_with(&LoadOptions::default()).expect("load the XDP program");
    println!(
        "{:<8} {:>14} {:>18}",
        "reals", "apply (median)", "set_weight (median)"
    );
    let mut json = String::from("[\n");
    for (i, n) in [10u32, 100, 1000].into_iter().enumerate() {
        let name = format!("bench{n}");
        let mut applies = Vec::new();
        for run in 0..RUNS {
            // Alternate the weights so every apply writes a new table.
            let svc = service(n, 1 + u32::try_from(run % 2).unwrap_or(0));
            let t = Instant::now();
            prog.apply(&name, &svc).expect("apply");
            applies.push(t.elapsed());
        }
        let svc = service(n, 1);
        prog.apply(&name, &svc).expect("apply");
        let mut weights = Vec::new();
        for run in 0..RUNS {
            let real = &svc.reals[run % svc.reals.len()];
            let weight = u32::try_from(run % 2).unwrap_or(0);
            let t = Instant::now();
            prog.set_weight(&name, real.addr, real.port, weight)
                .expect("set_weight");
            weights.push(t.elapsed());
        }
        prog.remove(&name).expect("remove");
        let (a, w) = (median(applies), median(weights));
        println!("{n:<8} {a:>14.3?} {w:>18.3?}");
        let _ = writeln!(
            json,
            "  {{\"reals\": {n}, \"apply_us\": {}, \"set_weight_us\": {}}}{}",
            a.as_micros(),
            w.as_micros(),
            if i == 2 { "" } else { "," }
        );
    }
    json.push_str("]\n");
    let path = super::save("control", &json);
    println!("written {}", path.display());
}
