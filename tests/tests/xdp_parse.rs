//! Layer 2: the XDP program's protocol classification through `BPF_PROG_TEST_RUN` (root, no
//! network namespace). One table of frames, each with the counters it must move.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions};
use balancer::dataplane::xdp::XdpProgram;
use balancer_common::ProtoCounter::{self, *};
use balancer_tests::{frame::*, require_root};

const C4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const C6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const XDP_PASS: u32 = 2;

struct Fixture {
    name: &'static str,
    frame: Vec<u8>,
    /// Counters that must rise by exactly one (`Frames` is implied); all others must not move.
    counts: &'static [ProtoCounter],
}

fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
    concat(&[
        &eth(&[], ETH_P_IP),
        &ipv4(C4, V4, proto, &[], 0, l4.len()),
        l4,
    ])
}

fn v6(next: u8, rest: &[u8]) -> Vec<u8> {
    concat(&[&eth(&[], ETH_P_IPV6), &ipv6(C6, V6, next, rest.len()), rest])
}

#[expect(clippy::too_many_lines, reason = "one table")]
fn fixtures() -> Vec<Fixture> {
    let syn = tcp(40000, 80, 0x02, 5);
    let dgram = udp(40000, 53, b"query");
    let echo4 = icmp_echo(8, 1, 1);
    let echo6 = icmp_echo(128, 1, 1);
    vec![
        Fixture {
            name: "tcp4 syn",
            frame: v4(IPPROTO_TCP, &syn),
            counts: &[Ipv4, Tcp4],
        },
        Fixture {
            name: "tcp4 with options (doff 8)",
            frame: v4(IPPROTO_TCP, &tcp(40000, 80, 0x02, 8)),
            counts: &[Ipv4, Tcp4],
        },
        Fixture {
            name: "udp4",
            frame: v4(IPPROTO_UDP, &dgram),
            counts: &[Ipv4, Udp4],
        },
        Fixture {
            name: "icmp4 echo",
            frame: v4(IPPROTO_ICMP, &echo4),
            counts: &[Ipv4, Icmp4],
        },
        Fixture {
            name: "gre4 is other",
            frame: v4(IPPROTO_GRE, &[0; 8]),
            counts: &[Ipv4, OtherL4v4],
        },
        Fixture {
            name: "ipv4 options (IHL 6) then udp",
            frame: concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(C4, V4, IPPROTO_UDP, &[1, 1, 1, 0], 0, dgram.len()),
                &dgram,
            ]),
            counts: &[Ipv4, Udp4],
        },
        Fixture {
            name: "ipv4 first fragment carries udp",
            frame: concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(C4, V4, IPPROTO_UDP, &[], 0x2000, dgram.len()),
                &dgram,
            ]),
            counts: &[Ipv4, Udp4],
        },
        Fixture {
            name: "ipv4 later fragment has no l4 header",
            frame: concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(C4, V4, IPPROTO_UDP, &[], 185, 8),
                &[0; 8],
            ]),
            counts: &[Ipv4, OtherL4v4],
        },
        Fixture {
            name: "802.1Q udp4",
            frame: concat(&[
                &eth(&[(ETH_P_8021Q, 100)], ETH_P_IP),
                &ipv4(C4, V4, IPPROTO_UDP, &[], 0, dgram.len()),
                &dgram,
            ]),
            counts: &[Vlan, Ipv4, Udp4],
        },
        Fixture {
            name: "802.1ad + 802.1Q tcp6",
            frame: concat(&[
                &eth(&[(ETH_P_8021AD, 10), (ETH_P_8021Q, 20)], ETH_P_IPV6),
                &ipv6(C6, V6, IPPROTO_TCP, syn.len()),
                &syn,
            ]),
            counts: &[Vlan, Ipv6, Tcp6],
        },
        Fixture {
            name: "arp",
            frame: concat(&[&eth(&[], ETH_P_ARP), &[0; 28]]),
            counts: &[Arp],
        },
        Fixture {
            name: "vlan arp",
            frame: concat(&[&eth(&[(ETH_P_8021Q, 7)], ETH_P_ARP), &[0; 28]]),
            counts: &[Vlan, Arp],
        },
        Fixture {
            name: "lldp is other l3",
            frame: concat(&[&eth(&[], 0x88cc), &[0; 32]]),
            counts: &[OtherL3],
        },
        Fixture {
            name: "tcp6",
            frame: v6(IPPROTO_TCP, &syn),
            counts: &[Ipv6, Tcp6],
        },
        Fixture {
            name: "udp6",
            frame: v6(IPPROTO_UDP, &dgram),
            counts: &[Ipv6, Udp6],
        },
        Fixture {
            name: "icmp6 echo",
            frame: v6(IPPROTO_ICMPV6, &echo6),
            counts: &[Ipv6, Icmp6],
        },
        Fixture {
            name: "ipv6 hop-by-hop, dstopts (16 bytes) then udp",
            frame: v6(
                0,
                &concat(&[&ipv6_ext(60, 0), &ipv6_ext(IPPROTO_UDP, 1), &dgram]),
            ),
            counts: &[Ipv6, Udp6],
        },
        Fixture {
            name: "ipv6 first fragment carries tcp",
            frame: v6(44, &concat(&[&ipv6_frag(IPPROTO_TCP, 0, true), &syn])),
            counts: &[Ipv6, Tcp6],
        },
        Fixture {
            name: "ipv6 later fragment has no l4 header",
            frame: v6(
                44,
                &concat(&[&ipv6_frag(IPPROTO_TCP, 100, false), &[0; 16]]),
            ),
            counts: &[Ipv6, OtherL4v6],
        },
        Fixture {
            name: "ipv6 five extension headers exceed the bound",
            frame: v6(
                0,
                &concat(&[
                    &ipv6_ext(60, 0),
                    &ipv6_ext(60, 0),
                    &ipv6_ext(60, 0),
                    &ipv6_ext(60, 0),
                    &ipv6_ext(IPPROTO_UDP, 0),
                    &dgram,
                ]),
            ),
            counts: &[Ipv6, OtherL4v6],
        },
        // Truncation and impossible lengths, at every header.
        Fixture {
            name: "vlan tag cut short",
            frame: concat(&[&eth(&[], ETH_P_8021Q), &[0, 100]]),
            counts: &[Truncated],
        },
        Fixture {
            name: "ipv4 header cut short",
            frame: concat(&[
                &eth(&[], ETH_P_IP),
                &ipv4(C4, V4, IPPROTO_UDP, &[], 0, 8)[..8],
            ]),
            counts: &[Truncated],
        },
        Fixture {
            name: "ipv4 IHL below 5",
            frame: {
                let mut f = v4(IPPROTO_UDP, &dgram);
                f[14] = 0x44;
                f
            },
            counts: &[Truncated],
        },
        Fixture {
            name: "ipv4 version 6 under ethertype ipv4",
            frame: {
                let mut f = v4(IPPROTO_UDP, &dgram);
                f[14] = 0x65;
                f
            },
            counts: &[Truncated],
        },
        Fixture {
            name: "tcp4 header cut short",
            frame: v4(IPPROTO_TCP, &syn[..12]),
            counts: &[Ipv4, Truncated],
        },
        Fixture {
            name: "tcp4 data offset past the frame",
            frame: v4(IPPROTO_TCP, &{
                let mut t = syn.clone();
                t[12] = 15 << 4;
                t
            }),
            counts: &[Ipv4, Truncated],
        },
        Fixture {
            name: "tcp4 data offset below 5",
            frame: v4(IPPROTO_TCP, &{
                let mut t = syn.clone();
                t[12] = 4 << 4;
                t
            }),
            counts: &[Ipv4, Truncated],
        },
        Fixture {
            name: "udp4 header cut short",
            frame: v4(IPPROTO_UDP, &dgram[..6]),
            counts: &[Ipv4, Truncated],
        },
        Fixture {
            name: "ipv6 header cut short",
            frame: concat(&[&eth(&[], ETH_P_IPV6), &ipv6(C6, V6, IPPROTO_UDP, 0)[..39]]),
            counts: &[Truncated],
        },
        Fixture {
            name: "ipv6 extension header cut short",
            frame: v6(0, &[IPPROTO_UDP]),
            counts: &[Ipv6, Truncated],
        },
        Fixture {
            name: "udp6 header cut short",
            frame: v6(IPPROTO_UDP, &dgram[..7]),
            counts: &[Ipv6, Truncated],
        },
    ]
}

#[test]
fn classification_fixtures() {
    require_root!();
    let mut prog = XdpProgram::load().expect("load the XDP program");
    let mut failures = Vec::new();
    for f in fixtures() {
        let before = prog.proto_counters().unwrap();
        let mut out = vec![0u8; f.frame.len() + 256];
        let result = prog
            .program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(&f.frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("{}: BPF_PROG_TEST_RUN: {e}", f.name));
        let delta = prog.proto_counters().unwrap().since(&before);
        if result.return_value != XDP_PASS {
            failures.push(format!(
                "{}: action {} != XDP_PASS",
                f.name, result.return_value
            ));
        }
        let out_len = usize::try_from(result.data_size_out).unwrap();
        if out[..out_len] != f.frame[..] {
            failures.push(format!("{}: the frame was modified", f.name));
        }
        for (c, got) in delta.iter() {
            let want = u64::from(c == Frames || f.counts.contains(&c));
            if got != want {
                failures.push(format!(
                    "{}: {} moved by {got}, expected {want}",
                    f.name,
                    c.name()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
