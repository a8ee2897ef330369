//! The node's network as the speaker sees it, for layer 2 and BGP alike:
//! interfaces, their addresses and carrier, and routes.

pub mod iface;
pub mod link;
