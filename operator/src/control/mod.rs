//! The control channel (barelb.control.v1): the hub that plans and tells
//! each speaker its part, the gRPC server speakers connect to (over TLS
//! with paced handshakes), the authentication of those speakers, and the
//! reader of the kubelets' heartbeats a settling leader consults.

pub mod hub;
pub mod inputs;
pub mod messages;
mod traces;

pub use hub::{Hub, SettleTimes};
pub mod auth;
pub mod heartbeats;
pub mod server;
mod tls;
