//! keepalived's `use_vmac`: the instance's addresses live on a macvlan of its interface whose
//! MAC is the VRRP virtual router MAC of RFC 5798 §7.3 (`00:00:5e:00:01:VRID` for IPv4,
//! `00:00:5e:00:02:VRID` for IPv6), so a takeover moves no ARP / neighbour entry: the new
//! master answers with the same MAC (`keepalived/vrrp/vrrp_vmac.c`, `vrrp_if_config.c`).
//!
//! IPv4 multicast adverts leave from the macvlan, so they carry the virtual MAC as RFC 5798
//! §7.3 has them (keepalived's default); unicast and IPv6 adverts leave from the base
//! interface (keepalived's `vmac_xmit_base`). Adverts are received on the base. Gratuitous
//! ARPs / NAs leave from the macvlan, so switches learn where the virtual MAC is.

use std::path::PathBuf;

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::link::MacVlanMode;
use rtnetlink::{LinkMacVlan, LinkUnspec};

use crate::vrrp::net::garp::Mac;
use crate::vrrp::net::vip::{Netlink, NetlinkError};

/// The RFC 5798 §7.3 virtual router MAC.
#[must_use]
pub fn virtual_mac(vrid: u8, ipv6: bool) -> Mac {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

/// keepalived's name for the macvlan when `use_vmac` gives none.
#[must_use]
pub fn default_name(vrid: u8) -> String {
    format!("vrrp.{vrid}")
}

/// `/proc/sys/net/.../conf/IFACE/KEY` values we changed, restored at the end.
#[derive(Debug, Default)]
struct Sysctls(Vec<(PathBuf, String)>);

impl Sysctls {
    /// Sets `key` of `iface` (IPv4 or IPv6 conf); the previous value is kept for
    /// [`Sysctls::restore`] when `restore` is set. Failures are logged: the macvlan still
    /// works, only less tidily.
    fn set(&mut self, family: &str, iface: &str, key: &str, value: &str, restore: bool) {
        let path = PathBuf::from(format!("/proc/sys/net/{family}/conf/{iface}/{key}"));
        let before = std::fs::read_to_string(&path).ok();
        if let Err(e) = std::fs::write(&path, value) {
            tracing::warn!(path = %path.display(), error = %e, "sysctl not set");
            return;
        }
        if let (true, Some(before)) = (restore, before) {
            self.0.push((path, before.trim().to_owned()));
        }
    }

    fn restore(&mut self) {
        for (path, value) in self.0.drain(..) {
            let _ = std::fs::write(path, value);
        }
    }
}

/// A macvlan we created; [`Vmac::remove`] deletes it and restores the base interface.
#[derive(Debug)]
pub struct Vmac {
    pub name: String,
    pub index: u32,
    sysctls: Sysctls,
}

impl Vmac {
    /// Creates `name` (private mode, `mac`) on the interface `base` / `base_index`, removing a
    /// link of that name left by an earlier run first, and brings it up. As keepalived does,
    /// the macvlan ignores ARP for addresses it does not hold and accepts our own multicast,
    /// and the base interface stops answering ARP for addresses that are not its own (the
    /// VIPs must be answered with the virtual MAC) and stops announcing them.
    ///
    /// # Errors
    /// Netlink refuses the link.
    pub async fn create(
        netlink: &Netlink,
        base: &str,
        base_index: u32,
        name: &str,
        mac: Mac,
    ) -> Result<Self, NetlinkError> {
        let handle = netlink.handle();
        let err = |source| NetlinkError::Link {
            interface: name.to_owned(),
            source,
        };
        if let Some(index) = link_index(&handle, name).await {
            tracing::warn!(
                interface = name,
                "removing a virtual MAC interface left behind"
            );
            handle.link().del(index).execute().await.map_err(err)?;
        }
        let message = LinkMacVlan::new(name, base_index, MacVlanMode::Private)
            .address(mac.to_vec())
            .build();
        handle.link().add(message).execute().await.map_err(err)?;
        let index =
            link_index(&handle, name)
                .await
                .ok_or_else(|| NetlinkError::NoSuchInterface {
                    interface: name.to_owned(),
                })?;
        let mut sysctls = Sysctls::default();
        // No link-local address of its own: both routers' macvlans share the MAC, so the
        // derived addresses would clash (adverts use the base interface's).
        sysctls.set("ipv6", name, "addr_gen_mode", "1", false);
        sysctls.set("ipv4", name, "arp_ignore", "1", false);
        sysctls.set("ipv4", name, "accept_local", "1", false);
        sysctls.set("ipv4", name, "rp_filter", "0", false);
        sysctls.set("ipv4", base, "arp_ignore", "1", true);
        sysctls.set("ipv4", base, "arp_filter", "1", true);
        // Ours, beyond keepalived: the base interface's own ARP requests (for a peer the
        // VIP answers, say) must not carry the VIP as sender with the base MAC, which would
        // teach the neighbours the wrong MAC for it.
        sysctls.set("ipv4", base, "arp_announce", "2", true);
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(err)?;
        Ok(Self {
            name: name.to_owned(),
            index,
            sysctls,
        })
    }

    /// Deletes the macvlan (its addresses go with it) and restores the base interface.
    pub async fn remove(mut self, netlink: &Netlink) {
        if let Err(e) = netlink.handle().link().del(self.index).execute().await {
            tracing::warn!(interface = self.name, error = %e, "virtual MAC interface not removed");
        }
        self.sysctls.restore();
    }
}

async fn link_index(handle: &rtnetlink::Handle, name: &str) -> Option<u32> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Some(m.header.index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_macs_are_rfc_5798_s() {
        // RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6.
        assert_eq!(virtual_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(255, true), [0, 0, 0x5e, 0, 2, 255]);
        assert_eq!(default_name(51), "vrrp.51");
    }
}
