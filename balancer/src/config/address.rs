//! The address forms keepalived.conf writes as text: `ADDR/PREFIX dev IF`, ranges, netmasks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::vrrp::net::Vip;

/// keepalived's range limit is similar; a larger range is almost certainly a typo.
pub const MAX_RANGE: u32 = 256;

/// One `virtual_ipaddress` line: `ADDR[/PREFIX] [dev IFNAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipLine {
    pub vip: Vip,
    pub dev: Option<String>,
}

/// Parses a `virtual_ipaddress` line; the error says what would be valid.
///
/// # Errors
/// Not an address, a bad prefix, or an option we do not implement.
pub fn vip_line(text: &str) -> Result<VipLine, String> {
    let mut words = text.split_whitespace();
    let first = words.next().ok_or("ADDR[/PREFIX] [dev IFNAME]")?;
    let (addr, prefix) = match first.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (first, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "an address such as 198.18.1.100/24 or fd00::100/64".to_owned())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    // keepalived's default: a host route.
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("a prefix length 0 to {max}"))?,
    };
    let vip = Vip::new(addr, prefix).map_err(|e| e.to_string())?;
    let mut dev = None;
    while let Some(word) = words.next() {
        match (word, words.next()) {
            ("dev", Some(name)) => dev = Some(name.to_owned()),
            (other, _) => {
                return Err(format!(
                    "ADDR[/PREFIX] [dev IFNAME] (`{other}` is not supported yet)"
                ));
            }
        }
    }
    Ok(VipLine { vip, dev })
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
        assert_eq!(l.dev.as_deref(), Some("eth0"));
        assert_eq!(vip_line("fd00::1").unwrap().vip.prefix, 128);
        assert!(vip_line("198.18.1.100/33").is_err());
        assert!(
            vip_line("198.18.1.100 label x")
                .unwrap_err()
                .contains("label")
        );
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
