//! barelb-speaker as a library: layer-2 announcements (ARP/NDP) today; BGP
//! and the control-channel client join as their issues land.

pub mod agent;
pub mod bgp;
pub mod l2;
pub mod metrics;
