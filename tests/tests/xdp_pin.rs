//! Pinned maps: a second program loaded on the same pin directory adopts the services, reals
//! and connections of the first, and a clean stop leaves nothing behind. Needs root.

use std::net::{IpAddr, Ipv4Addr};

use aya::programs::{TestRun as _, TestRunOptions};
use balancer::{
    dataplane::{
        Dataplane,
        xdp::{LoadOptions, PINNED_MAPS, XdpProgram},
    },
    model::{Egress, Method, Protocol, RealServer, Scheduler, VirtualService},
};
use balancer_common::maps::Globals;
use balancer_tests::{frame::*, lab::Bpffs, require_root};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

fn real(i: u8) -> RealServer {
    RealServer {
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, i)),
        port: 80,
        weight: 1,
        method: Method::Dr,
        tunnel_source: None,
        egress: Some(Egress {
            ifindex: 1,
            dmac: [2, 0xaa, 0, 0, 0, i],
            smac: [2, 0xbb, 0, 0, 0, 1],
        }),
    }
}

fn web(reals: Vec<RealServer>) -> VirtualService {
    VirtualService {
        vips: vec![IpAddr::V4(VIP)],
        port: 80,
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Rr,
        ops: false,
        hash_port: false,
        persistence: None,
        reals,
        sorry_server: None,
    }
}

/// The action and output frame for a TCP packet from `sport` with `flags`.
fn send(prog: &mut XdpProgram, sport: u16, flags: u8) -> (u32, Vec<u8>) {
    let t = tcp(sport, 80, flags, 5);
    let frame = concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(CLIENT, VIP, IPPROTO_TCP, &[], 0, t.len()),
        &t,
    ]);
    let mut out = vec![0u8; frame.len() + 64];
    let r = prog
        .program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap();
    (r.return_value, out)
}

/// The real (last MAC byte) a TCP packet from `sport` with `flags` is sent to.
fn target(prog: &mut XdpProgram, sport: u16, flags: u8) -> u8 {
    let (action, out) = send(prog, sport, flags);
    assert_eq!(action, 3, "XDP_TX");
    out[5]
}

fn load(dir: &std::path::Path) -> XdpProgram {
    XdpProgram::load_with(&LoadOptions {
        flows: 4096,
        persist: 64,
        timeouts: Globals::default(),
        pin_dir: Some(dir.to_owned()),
        ..LoadOptions::default()
    })
    .expect("load with pinned maps")
}

#[test]
fn a_restarted_program_adopts_services_reals_and_flows() {
    require_root!();
    let fs = Bpffs::new();
    let dir = fs.path().join("balancer").join("test");

    let mut first = load(&dir);
    first.apply("web", &web(vec![real(1), real(2)])).unwrap();
    let a = target(&mut first, 9000, 0x02);
    let b = target(&mut first, 9001, 0x02);
    assert_ne!(a, b);
    drop(first);
    for m in PINNED_MAPS {
        assert!(dir.join(m).exists(), "{m} is pinned");
    }

    let mut second = load(&dir);
    // The configuration is applied again, with a third real; the old ones keep their index.
    second
        .apply("web", &web(vec![real(1), real(2), real(3)]))
        .unwrap();
    assert_eq!(target(&mut second, 9000, 0x10), a, "established flows stay");
    assert_eq!(target(&mut second, 9001, 0x10), b);
    let stats = second
        .real_stats("web", IpAddr::V4(Ipv4Addr::new(198, 18, 1, a)), 80)
        .unwrap()
        .unwrap();
    assert_eq!(stats.conns, 1, "counters survive the restart");
    let seen: std::collections::BTreeSet<u8> = (0..6)
        .map(|p| target(&mut second, 9100 + p, 0x02))
        .collect();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);

    second.unpin().unwrap();
    assert!(!dir.exists(), "a clean stop leaves no pin behind");
}

#[test]
fn services_gone_from_the_configuration_are_removed_after_adoption() {
    require_root!();
    let fs = Bpffs::new();
    let dir = fs.path().join("gone");
    let mut first = load(&dir);
    first.apply("web", &web(vec![real(1)])).unwrap();
    target(&mut first, 9000, 0x02);
    drop(first);

    let mut second = load(&dir);
    assert_eq!(second.remove_unclaimed().unwrap(), 1);
    assert_eq!(
        send(&mut second, 9001, 0x02).0,
        2,
        "XDP_PASS: no service for a new connection any more"
    );
    // As IPVS keeps a deleted service's connections, the established one goes on draining.
    assert_eq!(
        send(&mut second, 9000, 0x10).0,
        3,
        "XDP_TX: still forwarded"
    );
    assert_eq!(second.draining(), 1);
    second.unpin().unwrap();
}

/// Maps pinned by a build that gave them another meaning are never adopted: the next start
/// stops with what to do, and leaves them (and whatever still runs from them) alone.
#[test]
fn maps_pinned_with_another_layout_are_refused() {
    use aya::maps::{Array, Map, MapData};
    use balancer_common::maps::{LAYOUT_MAP, LAYOUT_VERSION};

    require_root!();
    let fs = Bpffs::new();
    let dir = fs.path().join("balancer").join("test");
    let mut first = load(&dir);
    first.apply("web", &web(vec![real(1)])).unwrap();
    drop(first);
    let stamp = |version: u32| {
        let data = MapData::from_pin(dir.join(LAYOUT_MAP)).unwrap();
        let mut a: Array<MapData, u32> = Array::try_from(Map::Array(data)).unwrap();
        a.set(0, version, 0).unwrap();
    };
    let load_err = || {
        XdpProgram::load_with(&LoadOptions {
            pin_dir: Some(dir.clone()),
            ..LoadOptions::default()
        })
        .err()
        .expect("adopting maps of another layout must fail")
        .to_string()
    };

    stamp(LAYOUT_VERSION + 1);
    let e = load_err();
    assert!(
        e.contains(&format!(
            "layout {}, this build: {LAYOUT_VERSION}",
            LAYOUT_VERSION + 1
        )) && e.contains("--keep-state"),
        "{e}"
    );
    assert!(dir.join("SERVICES").exists(), "the pins are left alone");
    // Pins from before layouts were recorded.
    std::fs::remove_file(dir.join(LAYOUT_MAP)).unwrap();
    assert!(load_err().contains("layout unrecorded"));

    // Once removed, the next start begins afresh.
    for m in PINNED_MAPS {
        let _ = std::fs::remove_file(dir.join(m));
    }
    load(&dir).unpin().unwrap();
}
