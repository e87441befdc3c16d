//! The two-router LAN every VRRP test builds: our namespace (`v0`, `198.18.N.1/24`,
//! `fd00:N::1/64`) and a peer's (`k0`, `.2`, `::2`; keepalived or a second balancer) on one
//! veth link, and the check that exactly one side holds a virtual address.

use std::time::{Duration, Instant};

use crate::{Netns, daemon::Daemon, veth_pair, wait_until};

/// Which router holds an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Ours,
    Peer,
}

/// Two routers on one link.
pub struct Lan {
    pub ours: Netns,
    pub peer: Netns,
}

impl Lan {
    /// Builds the link with `subnet` as the third IPv4 octet and the second IPv6 group, so
    /// tests side by side never share addresses. IPv6 addresses skip DAD, so advert sources
    /// are usable at once.
    #[must_use]
    pub fn new(role: &str, subnet: u8) -> Self {
        let ours = Netns::new(&format!("{role}-ours"));
        let peer = Netns::new(&format!("{role}-peer"));
        for ns in [&ours, &peer] {
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
        }
        veth_pair(&ours, "v0", &peer, "k0");
        for (ns, dev, host) in [(&ours, "v0", 1), (&peer, "k0", 2)] {
            ns.ip(&[
                "addr",
                "add",
                &format!("198.18.{subnet}.{host}/24"),
                "dev",
                dev,
            ]);
            let v6 = format!("fd00:{subnet:x}::{host}/64");
            ns.ip(&["addr", "add", &v6, "dev", dev, "nodad"]);
        }
        Self { ours, peer }
    }

    /// (ours holds `vip`, the peer holds it).
    #[must_use]
    pub fn holders(&self, vip: &str) -> (bool, bool) {
        (self.ours.has_addr(vip), self.peer.has_addr(vip))
    }

    /// Waits (up to `handover`) until every one of `vips` is on `side` only, then checks that
    /// they stay there for `hold`: exactly one master.
    ///
    /// # Panics
    /// They do not get there, or one moves; the message carries the daemons' logs.
    pub fn settle(
        &self,
        vips: &[&str],
        side: Side,
        handover: Duration,
        hold: Duration,
        daemons: &[&Daemon],
    ) {
        let want = match side {
            Side::Ours => (true, false),
            Side::Peer => (false, true),
        };
        let all = || vips.iter().map(|v| self.holders(v)).collect::<Vec<_>>();
        let expected = vec![want; vips.len()];
        assert!(
            wait_until(handover, || all() == expected),
            "{vips:?} should be on {side:?} only, are on (ours, peer) = {:?}\n{}",
            all(),
            logs(daemons)
        );
        let end = Instant::now() + hold;
        while Instant::now() < end {
            assert_eq!(
                all(),
                expected,
                "{vips:?} left {side:?} or appeared twice\n{}",
                logs(daemons)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `balancer vrrp` (VRRPv3) on our side of `lan`: `v0`, with `vrid`, `priority` and
/// `advert_int`, then `extra` (the VIPs and anything else).
#[must_use]
pub fn ours_v3(lan: &Lan, vrid: &str, priority: &str, advert_int: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "vrrp",
        "--interface",
        "v0",
        "--vrid",
        vrid,
        "--priority",
        priority,
        "--version",
        "3",
        "--advert-int",
        advert_int,
    ];
    args.extend_from_slice(extra);
    Daemon::balancer(&lan.ours, &args)
}

/// The daemons' logs, one after the other.
#[must_use]
pub fn logs(daemons: &[&Daemon]) -> String {
    daemons
        .iter()
        .map(|d| d.log())
        .collect::<Vec<_>>()
        .join("\n-----\n")
}
