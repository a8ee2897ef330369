//! BGP: the wire codec (RFC 4271 and its extensions), the sans-IO session
//! state machine, the Adj-RIB-Out that turns a desired table into UPDATEs,
//! and the tokio session driver that connects them to a TCP socket.

pub mod codec;
pub mod config;
pub mod fsm;
pub mod routes;
pub mod session;
pub mod transport;
