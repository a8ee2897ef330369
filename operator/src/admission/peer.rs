//! BGPPeers: what the schema cannot say — a peer address that can never be
//! a router, a source address equal to the peer, multihop on an iBGP
//! session, a password reference that is not a Secret key, BFD echo — and
//! anything the operator could not hand its speakers.

use std::net::IpAddr;

use barelb_api::BGPPeer;

use super::Review;

pub fn review_peer(peer: &BGPPeer) -> Review {
    let name = peer.metadata.name.as_deref().unwrap_or("(unnamed)");
    let spec = &peer.spec;
    let deny = |what: String| Review::deny(format!("BGPPeer {name}: {what}"));
    let Ok(addr) = spec.peer_address.parse::<IpAddr>() else {
        return deny(format!(
            "peerAddress {:?} is not an IP address; write the router's address",
            spec.peer_address
        ));
    };
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || is_broadcast(&addr) {
        return deny(format!(
            "peerAddress {addr} cannot be a router (unspecified, loopback, multicast or broadcast); write the router's unicast address"
        ));
    }
    if let Some(src) = &spec.source_address {
        match src.parse::<IpAddr>() {
            Ok(s) if s == addr => {
                return deny(format!(
                    "sourceAddress equals peerAddress {addr}; use this node's address or drop sourceAddress"
                ));
            }
            Ok(s) if s.is_ipv4() != addr.is_ipv4() => {
                return deny(format!(
                    "sourceAddress {s} and peerAddress {addr} are of different families; use one family"
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return deny(format!(
                    "sourceAddress {src:?} is not an IP address; write an address of this node or drop it"
                ));
            }
        }
    }
    if spec.peer_port == Some(0) {
        return deny("peerPort 0 is not a port; drop it for 179".into());
    }
    if spec.my_asn == spec.peer_asn && spec.ebgp_multi_hop.is_some() {
        return deny(format!(
            "ebgpMultiHop is for eBGP sessions but myASN equals peerASN ({}); drop ebgpMultiHop",
            spec.my_asn
        ));
    }
    if let Some(r) = &spec.password_secret_ref {
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        };
        let key_ok = !r.key.is_empty()
            && r.key.len() <= 253
            && r.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !dns(&r.name) || !key_ok {
            return deny(format!(
                "passwordSecretRef {{name: {:?}, key: {:?}}} is not a Secret key reference; name a Secret in the operator's namespace and a key in its data",
                r.name, r.key
            ));
        }
    }
    if spec.bfd.as_ref().is_some_and(|b| b.echo == Some(true)) {
        return deny("bfd.echo is not supported; leave it out or set it to false".into());
    }
    // Whatever the operator could not hand its speakers (a duration it
    // cannot read, in any field) is refused here with the same words.
    if let Err(e) = crate::control::inputs::peer_config(name, spec, Vec::new()) {
        return Review::deny(e);
    }
    Review::allow()
}

fn is_broadcast(addr: &IpAddr) -> bool {
    matches!(addr, IpAddr::V4(v4) if v4.is_broadcast())
}
