//! `track_interface` (and the instance's own interface, which keepalived always tracks):
//! link state from rtnetlink, up meaning `IFF_UP` and `IFF_RUNNING` (carrier) both set, as
//! keepalived's `IF_FLAGS_UP` (`keepalived/include/vrrp_if.h`).

use std::pin::Pin;

use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::sys::SocketAddr;
use tokio::sync::mpsc::UnboundedSender;

use crate::vrrp::net::vip::NetlinkError;
use crate::vrrp::track::Update;

/// Whether a link message says the link is usable.
#[must_use]
pub fn is_up(message: &LinkMessage) -> bool {
    message
        .header
        .flags
        .contains(LinkFlags::Up | LinkFlags::Running)
}

fn name_of(message: &LinkMessage) -> Option<&str> {
    message.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// What the subscription yields.
type Messages =
    Pin<Box<dyn Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, SocketAddr)> + Send>>;

/// A subscription to link events, opened before the current states are read so that no
/// change falls between the two.
pub struct LinkWatch {
    handle: rtnetlink::Handle,
    messages: Messages,
}

impl LinkWatch {
    /// # Errors
    /// The netlink socket cannot be opened or subscribed.
    pub fn open() -> Result<Self, NetlinkError> {
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(|source| NetlinkError::Connect { source })?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            messages: Box::pin(messages),
        })
    }

    /// A handle for [`state`] queries.
    #[must_use]
    pub fn handle(&self) -> rtnetlink::Handle {
        self.handle.clone()
    }

    /// Sends [`Update::Link`] for each of `names` (index in the list, name) whenever its state
    /// changes, until `updates` closes or the netlink socket does. `states` are the states
    /// already reported.
    pub async fn run(
        mut self,
        names: Vec<String>,
        mut states: Vec<bool>,
        updates: UnboundedSender<Update>,
    ) {
        while let Some((message, _)) = self.messages.next().await {
            let (link, removed) = match message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => (link, false),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => (link, true),
                _ => continue,
            };
            let Some(index) = name_of(&link).and_then(|n| names.iter().position(|t| t == n)) else {
                continue;
            };
            let up = !removed && is_up(&link);
            if states[index] == up {
                continue;
            }
            states[index] = up;
            tracing::info!(interface = names[index], up, "tracked interface changed");
            let update = Update::Link {
                index,
                ifindex: link.header.index,
                up,
            };
            if updates.send(update).is_err() {
                return;
            }
        }
        tracing::error!("the rtnetlink link subscription ended: interface tracking stopped");
    }
}

/// The interface's index and whether it is up.
///
/// # Errors
/// It does not exist, or netlink fails.
pub async fn state(handle: &rtnetlink::Handle, name: &str) -> Result<(u32, bool), NetlinkError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok((m.header.index, is_up(&m))),
        Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => Err(NetlinkError::NoSuchInterface {
            interface: name.to_owned(),
        }),
        Err(source) => Err(NetlinkError::Link {
            interface: name.to_owned(),
            source,
        }),
    }
}
