//! The address forms keepalived.conf writes as text: `ADDR/PREFIX dev IF`, ranges, netmasks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::vrrp::net::Vip;
use crate::vrrp::net::vip::{AddressOptions, flags};

/// keepalived's range limit is similar; a larger range is almost certainly a typo.
pub const MAX_RANGE: u32 = 256;

/// One `virtual_ipaddress` line: `ADDR[/PREFIX]` and keepalived's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipLine {
    pub vip: Vip,
    pub options: AddressOptions,
}

/// The options a `virtual_ipaddress` line may carry, for error messages.
const VIP_SYNTAX: &str = "ADDR[/PREFIX] [dev IF] [brd ADDR|+|-] [scope SCOPE] [label LABEL] \
     [home] [mngtmpaddr] [noprefixroute] [autojoin] [-nodad] [no_track] [preferred_lft N|forever]";

/// `scope` names as `/etc/iproute2/rt_scopes` gives them, or a number.
fn scope(text: &str) -> Option<u8> {
    match text {
        "global" | "universe" => Some(0),
        "site" => Some(200),
        "link" => Some(253),
        "host" => Some(254),
        "nowhere" => Some(255),
        n => n.parse().ok(),
    }
}

/// Parses a `virtual_ipaddress` line; the error says what would be valid.
///
/// # Errors
/// Not an address, a bad prefix or option value, an option of the other family, or one we
/// do not implement (`peer`, `use_vmac` per address).
pub fn vip_line(text: &str) -> Result<VipLine, String> {
    let mut words = text.split_whitespace();
    let (addr, prefix) = addr_prefix(words.next().ok_or(VIP_SYNTAX)?)?;
    let vip = Vip::new(addr, prefix).map_err(|e| e.to_string())?;
    let mut options = AddressOptions::default();
    let v4_only = |word: &str| {
        if addr.is_ipv4() {
            Ok(())
        } else {
            Err(format!(
                "`{word}` only for an IPv4 address (keepalived ignores it on IPv6)"
            ))
        }
    };
    while let Some(word) = words.next() {
        let mut value = |what: &str| {
            words
                .next()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{word}` followed by {what}"))
        };
        match word {
            "dev" => options.dev = Some(value("an interface name")?),
            "brd" | "broadcast" => {
                v4_only(word)?;
                let IpAddr::V4(a) = addr else { unreachable!() };
                let given = value("an address, + or -")?;
                let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                options.broadcast = Some(match given.as_str() {
                    "+" | "-" if prefix > 30 => {
                        return Err(format!(
                            "`{word} {given}` with a prefix of /30 or shorter (this one is /{prefix})"
                        ));
                    }
                    "+" => Ipv4Addr::from(u32::from(a) | host),
                    "-" => Ipv4Addr::from(u32::from(a) & !host),
                    other => other
                        .parse()
                        .map_err(|_| format!("`{word}` followed by an IPv4 address, + or -"))?,
                });
            }
            "scope" => {
                v4_only(word)?;
                let given = value("a scope")?;
                options.scope = Some(scope(&given).ok_or_else(|| {
                    format!("scope {given}: global, site, link, host, nowhere or 0 to 255")
                })?);
            }
            "label" => {
                v4_only(word)?;
                let label = value("a label")?;
                if label.len() > 15 {
                    return Err(format!(
                        "label {label}: at most 15 characters (an interface name)"
                    ));
                }
                options.label = Some(label);
            }
            "home" => options.flags |= flags::HOMEADDRESS,
            "mngtmpaddr" => options.flags |= flags::MANAGETEMPADDR,
            "noprefixroute" => options.flags |= flags::NOPREFIXROUTE,
            "autojoin" => options.flags |= flags::MCAUTOJOIN,
            "-nodad" => options.dad = true,
            // We do not watch for a VIP removed behind our back, which is what no_track
            // asks for.
            "no_track" => {}
            "preferred_lft" => {
                let given = value("seconds or forever")?;
                options.preferred_lft = Some(if given == "forever" {
                    u32::MAX
                } else {
                    given
                        .parse()
                        .map_err(|_| "preferred_lft followed by seconds or forever".to_owned())?
                });
            }
            other => {
                return Err(format!("{VIP_SYNTAX} (`{other}` is not supported)"));
            }
        }
    }
    Ok(VipLine { vip, options })
}

/// `ADDR[/PREFIX]`; no prefix is a host's (keepalived's default).
///
/// # Errors
/// Not an address, or a prefix longer than it.
pub fn addr_prefix(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?}: an address such as 198.18.1.100/24 or fd00::100/64"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: a prefix length 0 to {max}"))?,
    };
    Ok((addr, prefix))
}

/// A `virtual_server_group` address line: `ADDR [PORT]`, `A.B.C.D-E [PORT]` or
/// `A.B.C.D/NN [PORT]`, expanded.
///
/// # Errors
/// Not one of those forms, or a range larger than [`MAX_RANGE`].
pub fn group_line(text: &str) -> Result<(Vec<IpAddr>, u16), String> {
    const EXPECTED: &str = "ADDR [PORT], ADDR-LAST [PORT] or ADDR/PREFIX [PORT]";
    let mut words = text.split_whitespace();
    let range = words.next().ok_or(EXPECTED)?;
    let port = match words.next() {
        None => 0,
        Some(p) => p.parse().map_err(|_| EXPECTED.to_owned())?,
    };
    if words.next().is_some() {
        return Err(EXPECTED.into());
    }
    let addrs = if let Some((first, last)) = range.split_once('-') {
        let first: IpAddr = first.parse().map_err(|_| EXPECTED.to_owned())?;
        let last = range_end(first, last).ok_or(EXPECTED)?;
        expand(first, last)?
    } else if let Some((addr, prefix)) = range.split_once('/') {
        let addr: IpAddr = addr.parse().map_err(|_| EXPECTED.to_owned())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u32 = prefix.parse().ok().filter(|p| *p <= max).ok_or(EXPECTED)?;
        let size = max - prefix;
        if size > 8 {
            return Err(format!("at most {MAX_RANGE} addresses in one line"));
        }
        let start = to_u128(addr) & !((1u128 << size) - 1);
        expand(
            from_u128(addr, start),
            from_u128(addr, start + (1u128 << size) - 1),
        )?
    } else {
        vec![range.parse().map_err(|_| EXPECTED.to_owned())?]
    };
    Ok((addrs, port))
}

/// The end of `first-LAST`: a full address, or the last byte (IPv4) / group (IPv6).
fn range_end(first: IpAddr, last: &str) -> Option<IpAddr> {
    if let Ok(full) = last.parse::<IpAddr>() {
        return Some(full);
    }
    match first {
        IpAddr::V4(a) => {
            let end: u8 = last.parse().ok()?;
            let [b0, b1, b2, _] = a.octets();
            Some(Ipv4Addr::new(b0, b1, b2, end).into())
        }
        IpAddr::V6(a) => {
            let end = u16::from_str_radix(last, 16).ok()?;
            let mut s = a.segments();
            s[7] = end;
            Some(Ipv6Addr::from(s).into())
        }
    }
}

fn expand(first: IpAddr, last: IpAddr) -> Result<Vec<IpAddr>, String> {
    if first.is_ipv4() != last.is_ipv4() {
        return Err("both ends of a range in one family".into());
    }
    let (a, b) = (to_u128(first), to_u128(last));
    if b < a {
        return Err(format!(
            "a range whose end {last} is at or above its start {first}"
        ));
    }
    if b - a >= u128::from(MAX_RANGE) {
        return Err(format!("at most {MAX_RANGE} addresses in one line"));
    }
    Ok((a..=b).map(|v| from_u128(first, v)).collect())
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// The prefix length of a netmask such as `255.255.255.0`, if its ones are contiguous.
#[must_use]
pub fn netmask_prefix(mask: IpAddr) -> Option<u8> {
    let (bits, width) = match mask {
        IpAddr::V4(m) => (u128::from(u32::from(m)) << 96, 32),
        IpAddr::V6(m) => (u128::from(m), 128),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0 && ones <= width)
        .then(|| u8::try_from(ones).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_lines() {
        let l = vip_line("198.18.1.100/24 dev eth0").unwrap();
        assert_eq!(l.vip.to_string(), "198.18.1.100/24");
        assert_eq!(l.options.dev.as_deref(), Some("eth0"));
        assert_eq!(vip_line("fd00::1").unwrap().vip.prefix, 128);
        assert!(vip_line("198.18.1.100/33").is_err());
        let l = vip_line("198.18.1.100/24 brd + scope link label eth0:vip noprefixroute").unwrap();
        assert_eq!(
            l.options,
            AddressOptions {
                broadcast: Some(Ipv4Addr::new(198, 18, 1, 255)),
                scope: Some(253),
                label: Some("eth0:vip".into()),
                flags: flags::NOPREFIXROUTE,
                ..AddressOptions::default()
            }
        );
        let brd = |line: &str| {
            vip_line(line)
                .unwrap()
                .options
                .broadcast
                .unwrap()
                .to_string()
        };
        assert_eq!(brd("198.18.1.100/24 brd -"), "198.18.1.0");
        assert_eq!(brd("198.18.1.100/24 broadcast 198.18.1.7"), "198.18.1.7");
        assert_eq!(
            vip_line("198.18.1.1/24 scope 7").unwrap().options.scope,
            Some(7)
        );
        let l = vip_line("fd00::1/64 -nodad preferred_lft forever no_track").unwrap();
        assert!(l.options.dad);
        assert_eq!(l.options.preferred_lft, Some(u32::MAX));
        for (line, named) in [
            ("198.18.1.100/31 brd +", "/30 or shorter"),
            ("fd00::1 label x", "only for an IPv4"),
            ("fd00::1 brd +", "only for an IPv4"),
            ("198.18.1.1 scope far", "scope far"),
            ("198.18.1.1 label a-very-long-label", "at most 15"),
            ("198.18.1.1 peer 198.18.1.2", "`peer` is not supported"),
            ("198.18.1.1 label", "`label` followed by"),
        ] {
            let e = vip_line(line).unwrap_err();
            assert!(e.contains(named), "{line}: {e}");
        }
    }

    #[test]
    fn group_ranges_follow_the_manual() {
        let (a, port) = group_line("192.168.200.1-10 80").unwrap();
        assert_eq!((a.len(), port), (10, 80));
        assert_eq!(a[9], "192.168.200.10".parse::<IpAddr>().unwrap());
        let (a, _) = group_line("192.168.200.250-192.168.201.10").unwrap();
        assert_eq!(a.len(), 17);
        let (a, _) = group_line("192.168.202.8/29 443").unwrap();
        assert_eq!(a.first().unwrap().to_string(), "192.168.202.8");
        assert_eq!(a.len(), 8);
        assert_eq!(group_line("fd00::1-3").unwrap().0.len(), 3);
        assert!(group_line("10.0.0.0-10.1.0.0").is_err());
        assert!(group_line("10.0.0.5-1").is_err());
    }

    #[test]
    fn netmasks_become_prefixes() {
        assert_eq!(netmask_prefix("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(netmask_prefix("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(netmask_prefix("0.0.0.0".parse().unwrap()), Some(0));
        assert_eq!(netmask_prefix("255.0.255.0".parse().unwrap()), None);
        assert_eq!(netmask_prefix("ffff:ffff::".parse().unwrap()), Some(32));
    }
}
