//! keepalived's `virtual_routes`: routes owned with the virtual addresses, added on becoming
//! master and removed on leaving it, through rtnetlink.
//!
//! The lines keepalived.conf(5) documents, for the common keywords:
//! `[src ADDR] [to] PREFIX [via|gw ADDR [or ADDR]...] [dev IF] [metric N] [table N]
//! [scope SCOPE]`, and
//! `blackhole|unreachable|prohibit PREFIX [table N] [metric N]`. Other keywords are refused by
//! validation, naming the route.

use std::net::IpAddr;

use rtnetlink::{
    RouteMessageBuilder, RouteNextHopBuilder,
    packet_route::{
        AddressFamily,
        route::{RouteMessage, RouteScope, RouteType},
    },
};

/// One `virtual_routes` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualRoute {
    pub dst: IpAddr,
    pub prefix: u8,
    /// The gateway, or several (`via A or B`: a multipath route).
    pub via: Vec<IpAddr>,
    pub src: Option<IpAddr>,
    pub dev: Option<String>,
    pub metric: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<RouteScope>,
    /// `Unicast`, or `Blackhole` / `Unreachable` / `Prohibit`.
    pub kind: RouteType,
}

impl VirtualRoute {
    /// Parses one line, or says what was expected.
    ///
    /// # Errors
    /// A keyword or value this reader does not accept.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace().peekable();
        let mut route = Self {
            dst: IpAddr::from([0, 0, 0, 0]),
            prefix: 0,
            via: Vec::new(),
            src: None,
            dev: None,
            metric: None,
            table: None,
            scope: None,
            kind: RouteType::Unicast,
        };
        let mut dst = None;
        while let Some(w) = words.next() {
            let mut value = |what: &str| {
                words
                    .next()
                    .ok_or_else(|| format!("{w} without {what}"))
                    .map(str::to_owned)
            };
            match w {
                "src" => route.src = Some(addr(&value("an address")?)?),
                "via" | "gw" => route.via.push(addr(&value("an address")?)?),
                "or" if !route.via.is_empty() => route.via.push(addr(&value("an address")?)?),
                "dev" => route.dev = Some(value("an interface")?),
                "metric" | "preference" | "priority" => {
                    route.metric = Some(number(&value("a number")?)?);
                }
                "table" => route.table = Some(number(&value("a table number")?)?),
                "scope" => {
                    route.scope = Some(match value("a scope")?.as_str() {
                        "global" | "universe" => RouteScope::Universe,
                        "site" => RouteScope::Site,
                        "link" => RouteScope::Link,
                        "host" => RouteScope::Host,
                        other => return Err(format!("scope {other}: global, site, link or host")),
                    });
                }
                "blackhole" => route.kind = RouteType::BlackHole,
                "unreachable" => route.kind = RouteType::Unreachable,
                "prohibit" => route.kind = RouteType::Prohibit,
                "to" => dst = Some(value("a destination")?),
                other
                    if dst.is_none()
                        && (other.contains('/') || other.parse::<IpAddr>().is_ok()) =>
                {
                    dst = Some(other.to_owned());
                }
                other => {
                    return Err(format!(
                        "{other:?}: [src ADDR] [to] PREFIX [via ADDR] [dev IF] [metric N] [table N] [scope S], or blackhole|unreachable|prohibit PREFIX"
                    ));
                }
            }
        }
        let dst = dst.ok_or("no destination PREFIX")?;
        let (a, p) = if let Some((a, p)) = dst.split_once('/') {
            (
                addr(a)?,
                p.parse::<u8>().map_err(|_| format!("prefix {p}"))?,
            )
        } else {
            let a = addr(&dst)?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        };
        if p > if a.is_ipv4() { 32 } else { 128 } {
            return Err(format!("prefix /{p} longer than the address"));
        }
        for other in route.via.iter().copied().chain(route.src) {
            if other.is_ipv4() != a.is_ipv4() {
                return Err(format!("{other} is not of {a}'s family"));
            }
        }
        if route.kind != RouteType::Unicast && (!route.via.is_empty() || route.dev.is_some()) {
            return Err("a blackhole, unreachable or prohibit route has no via or dev".into());
        }
        route.dst = a;
        route.prefix = p;
        Ok(route)
    }

    /// The rtnetlink message for this route, `ifindex` being `dev`'s (resolved by the caller).
    #[must_use]
    pub fn message(&self, ifindex: Option<u32>) -> RouteMessage {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.dst, self.prefix)
            .unwrap_or_else(|_| RouteMessageBuilder::<IpAddr>::new())
            .kind(self.kind);
        match self.via.as_slice() {
            [] => {}
            [via] => {
                if let Ok(next) = b.clone().gateway(*via) {
                    b = next;
                }
            }
            many => {
                let family = if self.dst.is_ipv4() {
                    AddressFamily::Inet
                } else {
                    AddressFamily::Inet6
                };
                let hops = many
                    .iter()
                    .filter_map(|via| {
                        let hop = RouteNextHopBuilder::new(family).via(*via).ok()?;
                        Some(match ifindex {
                            Some(i) => hop.interface(i),
                            None => hop,
                        })
                    })
                    .map(RouteNextHopBuilder::build)
                    .collect();
                b = b.multipath(hops);
            }
        }
        if let Some(src) = self.src
            && let Ok(next) = b.clone().pref_source(src)
        {
            b = next;
        }
        if let (Some(i), true) = (ifindex, self.via.len() < 2) {
            b = b.output_interface(i);
        }
        if let Some(m) = self.metric {
            b = b.priority(m);
        }
        if let Some(t) = self.table {
            b = b.table_id(t);
        }
        if let Some(s) = self.scope {
            b = b.scope(s);
        }
        b.build()
    }
}

fn addr(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an address"))
}

fn number(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepaliveds_documented_lines_parse() {
        let r = VirtualRoute::parse(
            "src 192.168.100.1 to 192.168.109.0/24 via 192.168.200.254 dev eth1",
        )
        .unwrap();
        assert_eq!(
            (r.dst, r.prefix, r.via.clone(), r.src, r.dev.as_deref()),
            (
                "192.168.109.0".parse().unwrap(),
                24,
                vec!["192.168.200.254".parse().unwrap()],
                Some("192.168.100.1".parse().unwrap()),
                Some("eth1")
            )
        );
        let r =
            VirtualRoute::parse("192.168.111.0/24 dev eth2 metric 5 table 100 scope link").unwrap();
        assert_eq!(
            (r.metric, r.table, r.scope),
            (Some(5), Some(100), Some(RouteScope::Link))
        );
        let r = VirtualRoute::parse("blackhole 192.168.114.0/24").unwrap();
        assert_eq!(r.kind, RouteType::BlackHole);
        let r = VirtualRoute::parse("0.0.0.0/0 gw 192.168.0.1 table 100").unwrap();
        assert_eq!((r.prefix, r.table), (0, Some(100)));
        let r = VirtualRoute::parse("fd00:1::/64 via fd00::1").unwrap();
        assert_eq!(r.prefix, 64);
        assert_eq!(VirtualRoute::parse("198.18.9.9").unwrap().prefix, 32);
    }

    #[test]
    fn what_is_not_understood_is_refused_with_the_grammar() {
        let r =
            VirtualRoute::parse("192.168.113.0/24 via 192.168.100.252 or 192.168.100.253").unwrap();
        assert_eq!(r.via.len(), 2, "a multipath route");
        for (line, says) in [
            ("192.168.1.0/24 or 192.168.0.2", "\"or\""),
            ("via 192.168.0.1", "no destination"),
            ("192.168.1.0/33", "longer"),
            ("192.168.1.0/24 via fd00::1", "family"),
            ("blackhole 192.168.1.0/24 dev eth0", "no via or dev"),
            ("192.168.1.0/24 scope nowhere", "scope nowhere"),
            ("192.168.1.0/24 metric", "without a number"),
        ] {
            let err = VirtualRoute::parse(line).unwrap_err();
            assert!(err.contains(says), "{line}: {err}");
        }
    }
}
