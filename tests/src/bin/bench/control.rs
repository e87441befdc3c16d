//! `cargo xtask bench control`: how long a change takes to reach the XDP program's maps,
//! for an mh service of 10, 100 and 1,000 reals; each figure is the median of 21 runs:
//! - `apply` of the whole service;
//! - `set_weight` of one real, tables included;
//! - what a checker's decision costs: `set_weight_fast` of a live real to 0 (after which it
//!   takes no new connection until it is set back) and of the same real back up (which
//!   returns it to the table it left), and the `flush` that computes the exact table after
//!   the failure (the checkers' flusher runs it, once per burst of decisions).

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
    let columns = ["apply", "set_weight", "fast, down", "fast, up", "flush"];
    print!("{:<8}", "reals");
    for c in columns {
        print!(" {c:>12}");
    }
    println!("   (medians)");
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
            for weight in [0, 1] {
                let t = Instant::now();
                prog.set_weight(&name, real.addr, real.port, weight)
                    .expect("set_weight");
                weights.push(t.elapsed());
            }
        }
        prog.apply(&name, &svc).expect("apply");
        let (mut downs, mut ups, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..RUNS {
            let real = &svc.reals[run % svc.reals.len()];
            for (weight, times) in [(0, &mut downs), (1, &mut ups)] {
                let t = Instant::now();
                prog.set_weight_fast(&name, real.addr, real.port, weight)
                    .expect("set_weight_fast");
                times.push(t.elapsed());
                let t = Instant::now();
                prog.flush().expect("flush");
                // Only the flush after a failure computes a table: the real coming back
                // returns to the table it left, written by set_weight_fast itself.
                if weight == 0 {
                    flushes.push(t.elapsed());
                }
            }
        }
        prog.remove(&name).expect("remove");
        let figures = [applies, weights, downs, ups, flushes].map(median);
        print!("{n:<8}");
        for f in figures {
            print!(" {:>12}", format!("{f:.1?}"));
        }
        println!();
        let _ = write!(json, "  {{\"reals\": {n}");
        for (c, f) in columns.iter().zip(figures) {
            let _ = write!(
                json,
                ", \"{}_us\": {:.1}",
                c.replace(", ", "_"),
                f.as_secs_f64() * 1e6
            );
        }
        let _ = writeln!(json, "}}{}", if i == 2 { "" } else { "," });
    }
    json.push_str("]\n");
    let path = super::save("control", &json);
    println!("written {}", path.display());
}
