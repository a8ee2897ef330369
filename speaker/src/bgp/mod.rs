//! BGP: the wire codec (RFC 4271 and its extensions). The sans-IO state
//! machine and the tokio session driver build on it.

pub mod codec;
pub mod fsm;
