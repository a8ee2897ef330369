//! BFD (RFC 5880 asynchronous mode; single hop RFC 5881, multihop RFC
//! 5883): the wire codec and the sans-IO session state machine. A BFD
//! session going Down takes its BGP session down at once, so a silently
//! dead node's routes leave the router within the detection time rather
//! than the BGP hold time.

pub mod codec;
pub mod driver;
pub mod session;
mod socket;
