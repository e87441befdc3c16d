//! keepalived's `virtual_rules`: policy routing rules owned with the virtual addresses,
//! added on becoming master (after the addresses and `virtual_routes`) and removed on
//! leaving it (before the routes), through rtnetlink.
//!
//! A line is read as keepalived's `alloc_rule` (`vrrp_iprule.c`) reads it:
//! `[inet|inet6] [not] [from PREFIX] [to PREFIX] [iif|dev IF] [oif IF] [fwmark N[/MASK]]
//! [tos|dsfield N] [preference|priority|order N] [uidrange A-B] [ipproto P] [sport A[-B]]
//! [dport A[-B]] [protocol N] [no_track]` and one action: `table|lookup N`, `goto N`, `nop`,
//! `blackhole`, `unreachable`, `prohibit` or `l3mdev` (a table action may add
//! `suppress_prefixlength N` and `suppress_ifgroup N`). With neither `from` nor `to` nor a
//! family keyword, the rule is IPv4, as keepalived makes it. Unlike keepalived, a single
//! port (`dport 80`) is accepted.

use std::net::IpAddr;

use rtnetlink::packet_route::{
    AddressFamily, IpProtocol,
    route::RouteProtocol,
    rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage, RulePortRange, RuleUidRange},
};

/// keepalived marks the rules it owns with this protocol (`RTPROT_KEEPALIVED`).
pub const PROTOCOL_KEEPALIVED: u8 = 18;

/// Where keepalived counts down from when it assigns a preference (`RULE_START_PRIORITY`).
pub const FIRST_ASSIGNED_PRIORITY: u32 = 16384;

/// One `virtual_rules` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualRule {
    pub v6: bool,
    /// `from` and `to`: address and prefix length (`all` / `default` / `any`: length 0).
    pub from: Option<(IpAddr, u8)>,
    pub to: Option<(IpAddr, u8)>,
    /// `not`.
    pub invert: bool,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub fwmark: Option<u32>,
    pub fwmask: Option<u32>,
    pub tos: u8,
    /// `preference`; validation assigns one, as keepalived does, when the line has none.
    pub priority: Option<u32>,
    pub action: Action,
    pub suppress_prefixlength: Option<u32>,
    pub suppress_ifgroup: Option<u32>,
    pub uidrange: Option<(u32, u32)>,
    pub ipproto: Option<u8>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    /// `protocol`; keepalived's own (18) unless given.
    pub protocol: Option<u8>,
}

/// What a matching packet does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    None,
    Table(u32),
    Goto(u32),
    Nop,
    Blackhole,
    Unreachable,
    Prohibit,
    L3mdev,
}

const SYNTAX: &str = "[inet|inet6] [not] [from PREFIX] [to PREFIX] [iif IF] [oif IF] \
     [fwmark N[/MASK]] [tos N] [preference N] [uidrange A-B] [ipproto P] [sport A[-B]] \
     [dport A[-B]] [protocol N] and one of table N, goto N, nop, blackhole, unreachable, \
     prohibit, l3mdev";

impl VirtualRule {
    /// Parses one line, or says what was expected.
    ///
    /// # Errors
    /// A keyword or value this reader does not accept, or a combination keepalived refuses
    /// (two actions, none, `goto` without a preference below its target, mixed families).
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut rule = Self::default();
        let mut family: Option<bool> = None;
        let mut set_family = |v6: bool, what: &str| match family {
            Some(f) if f != v6 => Err(format!("{what}: the rule mixes IPv4 and IPv6")),
            _ => {
                family = Some(v6);
                Ok(())
            }
        };
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            let mut value = |what: &str| {
                words
                    .next()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("`{w}` followed by {what}"))
            };
            let action = |rule: &mut Self, a: Action| {
                if rule.action != Action::None {
                    return Err(format!("`{w}`: a rule has one action"));
                }
                rule.action = a;
                Ok(())
            };
            match w {
                "inet" => set_family(false, w)?,
                "inet6" => set_family(true, w)?,
                "not" => rule.invert = true,
                "from" | "to" => {
                    let (addr, len) = prefix(&value("a prefix, or all")?)?;
                    if let Some(a) = addr {
                        set_family(a.is_ipv6(), w)?;
                    }
                    // A family-less `all` takes the rule's family below.
                    let p = (addr.unwrap_or(IpAddr::from([0, 0, 0, 0])), len);
                    if w == "from" {
                        rule.from = Some(p);
                    } else {
                        rule.to = Some(p);
                    }
                }
                "iif" | "dev" => rule.iif = Some(value("an interface")?),
                "oif" => rule.oif = Some(value("an interface")?),
                "fwmark" => {
                    let v = value("a mark")?;
                    let (value, mask) = v.split_once('/').unwrap_or((&v, ""));
                    rule.fwmark = Some(number(value)?);
                    rule.fwmask = (!mask.is_empty()).then(|| number(mask)).transpose()?;
                }
                "tos" | "dsfield" => {
                    rule.tos = u8::try_from(number(&value("a value")?)?)
                        .map_err(|_| format!("`{w}` of at most 255"))?;
                }
                "preference" | "priority" | "order" => {
                    rule.priority = Some(number(&value("a number")?)?);
                }
                "table" | "lookup" => {
                    let t = table(&value("a table")?)?;
                    action(&mut rule, Action::Table(t))?;
                }
                "goto" => {
                    let t = number(&value("a preference")?)?;
                    action(&mut rule, Action::Goto(t))?;
                }
                "nop" => action(&mut rule, Action::Nop)?,
                "blackhole" => action(&mut rule, Action::Blackhole)?,
                "unreachable" => action(&mut rule, Action::Unreachable)?,
                "prohibit" => action(&mut rule, Action::Prohibit)?,
                "l3mdev" => action(&mut rule, Action::L3mdev)?,
                "suppress_prefixlength" | "sup_pl" => {
                    rule.suppress_prefixlength = Some(number(&value("a prefix length")?)?);
                }
                "suppress_ifgroup" | "sup_group" => {
                    rule.suppress_ifgroup = Some(number(&value("a group number")?)?);
                }
                "uidrange" => {
                    let v = value("A-B")?;
                    let (a, b) = v.split_once('-').ok_or("`uidrange` followed by A-B")?;
                    rule.uidrange = Some((number(a)?, number(b)?));
                }
                "ipproto" => rule.ipproto = Some(ipproto(&value("a protocol")?)?),
                "sport" | "dport" => {
                    let r = ports(&value("a port or A-B")?)?;
                    if w == "sport" {
                        rule.sport = Some(r);
                    } else {
                        rule.dport = Some(r);
                    }
                }
                "protocol" => {
                    rule.protocol = Some(
                        u8::try_from(number(&value("a number")?)?)
                            .map_err(|_| "`protocol` of at most 255".to_owned())?,
                    );
                }
                // `type` only introduces the action. We do not watch for a rule removed behind
                // our back, which is what no_track asks for.
                "type" | "no_track" => {}
                other => return Err(format!("{SYNTAX} (`{other}` is not supported)")),
            }
        }
        rule.finish(family.unwrap_or(false))
    }

    /// The rule's family given to family-less prefixes, and keepalived's checks of the
    /// whole line.
    fn finish(self, v6: bool) -> Result<Self, String> {
        let mut rule = self;
        rule.v6 = v6;
        let zero = if rule.v6 {
            IpAddr::from([0u16; 8])
        } else {
            IpAddr::from([0, 0, 0, 0])
        };
        for p in [&mut rule.from, &mut rule.to].into_iter().flatten() {
            if p.1 == 0 {
                p.0 = zero;
            }
        }
        match rule.action {
            Action::None => {
                return Err(format!(
                    "no action: one of table N, goto N, nop, blackhole, unreachable, prohibit, l3mdev ({SYNTAX})"
                ));
            }
            Action::Goto(target) => match rule.priority {
                None => return Err(format!("goto {target} without a preference")),
                Some(p) if p >= target => {
                    return Err(format!(
                        "preference {p} is not below its goto target {target}"
                    ));
                }
                Some(_) => {}
            },
            Action::Table(0) => return Err("table 0 is not a table".into()),
            _ => {}
        }
        if !matches!(rule.action, Action::Table(_))
            && (rule.suppress_prefixlength.is_some() || rule.suppress_ifgroup.is_some())
        {
            return Err("suppress_prefixlength / suppress_ifgroup only with a table action".into());
        }
        Ok(rule)
    }

    /// The rtnetlink message for this rule (its preference assigned).
    #[must_use]
    pub fn message(&self) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = if self.v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        m.header.tos = self.tos;
        if self.invert {
            m.header.flags |= RuleFlags::Invert;
        }
        let a = &mut m.attributes;
        if let Some((addr, len)) = self.from {
            m.header.src_len = len;
            if len > 0 {
                a.push(RuleAttribute::Source(addr));
            }
        }
        if let Some((addr, len)) = self.to {
            m.header.dst_len = len;
            if len > 0 {
                a.push(RuleAttribute::Destination(addr));
            }
        }
        if let Some(p) = self.priority {
            a.push(RuleAttribute::Priority(p));
        }
        if let Some(mark) = self.fwmark {
            a.push(RuleAttribute::FwMark(mark));
        }
        if let Some(mask) = self.fwmask {
            a.push(RuleAttribute::FwMask(mask));
        }
        if let Some(i) = &self.iif {
            a.push(RuleAttribute::Iifname(i.clone()));
        }
        if let Some(o) = &self.oif {
            a.push(RuleAttribute::Oifname(o.clone()));
        }
        if let Some(s) = self.suppress_prefixlength {
            a.push(RuleAttribute::SuppressPrefixLen(s));
        }
        if let Some(g) = self.suppress_ifgroup {
            a.push(RuleAttribute::SuppressIfGroup(g));
        }
        if let Some((start, end)) = self.uidrange {
            a.push(RuleAttribute::UidRange(RuleUidRange { start, end }));
        }
        if let Some(p) = self.ipproto {
            a.push(RuleAttribute::IpProtocol(IpProtocol::from(p)));
        }
        if let Some((start, end)) = self.sport {
            a.push(RuleAttribute::SourcePortRange(RulePortRange { start, end }));
        }
        if let Some((start, end)) = self.dport {
            a.push(RuleAttribute::DestinationPortRange(RulePortRange {
                start,
                end,
            }));
        }
        a.push(RuleAttribute::Protocol(RouteProtocol::from(
            self.protocol.unwrap_or(PROTOCOL_KEEPALIVED),
        )));
        m.header.action = match self.action {
            Action::Table(t) => {
                // Tables above 255 go in FRA_TABLE only, as keepalived and iproute2 send them.
                m.header.table = u8::try_from(t).unwrap_or(0);
                a.push(RuleAttribute::Table(t));
                RuleAction::ToTable
            }
            Action::L3mdev => {
                a.push(RuleAttribute::L3MDev(true));
                RuleAction::ToTable
            }
            Action::Goto(target) => {
                a.push(RuleAttribute::Goto(target));
                RuleAction::Goto
            }
            Action::Nop => RuleAction::Nop,
            Action::Blackhole => RuleAction::Blackhole,
            Action::Unreachable => RuleAction::Unreachable,
            Action::Prohibit => RuleAction::Prohibit,
            Action::None => RuleAction::Unspec,
        };
        m
    }
}

/// `ADDR[/LEN]`, or `all` / `default` / `any` (no address, length 0).
fn prefix(text: &str) -> Result<(Option<IpAddr>, u8), String> {
    if matches!(text, "all" | "default" | "any") {
        return Ok((None, 0));
    }
    let (addr, len) = crate::config::address::addr_prefix(text)?;
    Ok((Some(addr), len))
}

/// A number, decimal or `0x` hexadecimal (keepalived reads marks with `strtoul` base 0).
fn number(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not a number"))
}

/// A table by number or by the names every system has (`/etc/iproute2/rt_tables`).
fn table(text: &str) -> Result<u32, String> {
    match text {
        "main" => Ok(254),
        "local" => Ok(255),
        "default" => Ok(253),
        n => number(n).map_err(|_| format!("table {n}: a number, main, local or default")),
    }
}

fn ipproto(text: &str) -> Result<u8, String> {
    match text.to_ascii_lowercase().as_str() {
        "icmp" => Ok(1),
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "gre" => Ok(47),
        "esp" => Ok(50),
        "ah" => Ok(51),
        "ipv6-icmp" | "icmpv6" => Ok(58),
        "sctp" => Ok(132),
        n => n
            .parse()
            .map_err(|_| format!("ipproto {text}: a number or tcp, udp, icmp, sctp...")),
    }
}

fn ports(text: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port"));
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let (a, b) = (port(a)?, port(b)?);
    if b < a {
        return Err(format!("port range {text}: the end below the start"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manuals_lines_parse() {
        let r = VirtualRule::parse("from 192.168.2.0/24 table 1").unwrap();
        assert_eq!(r.from, Some(("192.168.2.0".parse().unwrap(), 24)));
        assert_eq!((r.v6, r.action), (false, Action::Table(1)));
        let r = VirtualRule::parse("to 192.168.2.0/24 table 1 no_track").unwrap();
        assert_eq!(r.to, Some(("192.168.2.0".parse().unwrap(), 24)));
        let r = VirtualRule::parse(
            "to 1:2:3:4:5:6:7:0/112 from 7:6:5:4:3:2::/96 table 6908 uidrange 10000-19999",
        )
        .unwrap();
        assert!(r.v6);
        assert_eq!(r.uidrange, Some((10000, 19999)));
        let m = r.message();
        assert_eq!(
            (m.header.src_len, m.header.dst_len, m.header.table),
            (96, 112, 0)
        );
        assert!(m.attributes.contains(&RuleAttribute::Table(6908)));
    }

    #[test]
    fn every_keyword_reaches_the_message() {
        let r = VirtualRule::parse(
            "not from all iif v0 oif v1 fwmark 0x10/0xff tos 8 preference 100 ipproto tcp \
             sport 1000-2000 dport 80 lookup main suppress_prefixlength 0",
        )
        .unwrap();
        let m = r.message();
        assert!(m.header.flags.contains(RuleFlags::Invert));
        assert_eq!(
            (m.header.tos, m.header.table, m.header.src_len),
            (8, 254, 0)
        );
        assert_eq!(m.header.action, RuleAction::ToTable);
        for want in [
            RuleAttribute::Iifname("v0".into()),
            RuleAttribute::Oifname("v1".into()),
            RuleAttribute::FwMark(16),
            RuleAttribute::FwMask(255),
            RuleAttribute::Priority(100),
            RuleAttribute::IpProtocol(IpProtocol::Tcp),
            RuleAttribute::SourcePortRange(RulePortRange {
                start: 1000,
                end: 2000,
            }),
            RuleAttribute::DestinationPortRange(RulePortRange { start: 80, end: 80 }),
            RuleAttribute::SuppressPrefixLen(0),
            RuleAttribute::Protocol(RouteProtocol::from(PROTOCOL_KEEPALIVED)),
        ] {
            assert!(
                m.attributes.contains(&want),
                "{want:?} in {:?}",
                m.attributes
            );
        }
        let r = VirtualRule::parse("inet6 preference 5 goto 10").unwrap();
        assert!(r.v6);
        assert_eq!(r.message().header.action, RuleAction::Goto);
        assert_eq!(
            VirtualRule::parse("from all blackhole").unwrap().action,
            Action::Blackhole
        );
    }

    #[test]
    fn what_keepalived_refuses_is_refused_by_name() {
        for (line, named) in [
            ("from 198.18.0.0/24", "no action"),
            ("from 198.18.0.0/24 table 1 goto 5", "one action"),
            ("goto 10 table 1", "one action"),
            ("goto 10", "without a preference"),
            ("preference 10 goto 10", "not below"),
            (
                "from 198.18.0.0/24 to fd00::/8 table 1",
                "mixes IPv4 and IPv6",
            ),
            ("inet6 from 198.18.0.0/24 table 1", "mixes IPv4 and IPv6"),
            ("table 0", "table 0"),
            ("nop suppress_prefixlength 0", "only with a table"),
            ("realms 3 table 1", "`realms` is not supported"),
            ("sport 20-10 table 1", "below the start"),
            ("table", "followed by a table"),
        ] {
            let e = VirtualRule::parse(line).unwrap_err();
            assert!(e.contains(named), "{line}: {e}");
        }
    }
}
