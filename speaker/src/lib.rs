//! barelb-speaker as a library: the control-channel agent (`agent`), layer-2
//! announcements over ARP/NDP (`l2`), the BGP speaker (`bgp`: codec, FSM,
//! sessions) and the metrics they export.

pub mod agent;
pub mod bfd;
pub mod bgp;
pub mod l2;
pub mod metrics;
pub mod net;
