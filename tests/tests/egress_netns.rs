//! The daemon resolves each real's egress over rtnetlink, so the XDP program needs no FIB
//! lookup per packet: the route's interface, the next hop's MAC (the real itself on the link,
//! else the gateway), our MAC. Needs root.

use std::net::IpAddr;

use balancer::{dataplane::egress::Resolver, model::Egress};
use balancer_tests::{Netns, require_root, veth_pair};

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn egress_comes_from_the_route_and_the_neighbour_table() {
    require_root!();
    let lb = Netns::new("eg");
    let peer = Netns::new("egpeer");
    veth_pair(&lb, "e0", &peer, "e1");
    lb.ip(&["link", "set", "e0", "address", "02:00:00:00:00:02"]);
    lb.ip(&["addr", "add", "198.18.0.2/24", "dev", "e0"]);
    lb.ip(&["-6", "addr", "add", "fd00::2/64", "dev", "e0", "nodad"]);
    // A real on the link, a gateway to another network, and their MACs as ARP/ND learnt them.
    for (addr, lladdr) in [
        ("198.18.0.11", "02:00:00:00:00:11"),
        ("198.18.0.1", "02:00:00:00:00:01"),
        ("fd00::11", "02:00:00:00:00:61"),
    ] {
        lb.ip(&["neigh", "add", addr, "lladdr", lladdr, "dev", "e0"]);
    }
    lb.ip(&["route", "add", "198.18.5.0/24", "via", "198.18.0.1"]);
    let addrs: Vec<IpAddr> = [
        "198.18.0.11",
        "198.18.5.7",
        "fd00::11",
        "198.18.0.12",
        "198.19.0.1",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let (found, ifindex) = lb.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let found =
            rt.block_on(async { Resolver::connect().unwrap().resolve(&addrs).await.unwrap() });
        let name = std::ffi::CString::new("e0").unwrap();
        // SAFETY: a valid NUL-terminated name.
        (found, unsafe { libc::if_nametoindex(name.as_ptr()) })
    });
    let ours = mac("02:00:00:00:00:02");
    let via = |m: &str| Egress {
        ifindex,
        dmac: mac(m),
        smac: ours,
    };
    assert_eq!(
        found.get(&addrs[0]),
        Some(&via("02:00:00:00:00:11")),
        "on the link"
    );
    assert_eq!(
        found.get(&addrs[1]),
        Some(&via("02:00:00:00:00:01")),
        "via the gateway"
    );
    assert_eq!(
        found.get(&addrs[2]),
        Some(&via("02:00:00:00:00:61")),
        "IPv6"
    );
    assert!(!found.contains_key(&addrs[3]), "not resolved yet");
    assert!(!found.contains_key(&addrs[4]), "no route");
    assert_eq!(found.len(), 3);
    // The unresolved real was solicited: the kernel has an entry for it now.
    let neigh = lb.output("ip", &["neigh", "show", "198.18.0.12"]);
    assert!(
        !String::from_utf8_lossy(&neigh.stdout).trim().is_empty(),
        "the kernel was asked to resolve it"
    );
}
