//! barelb-operator as a library: the plain-Rust core (IPAM, requests, pools,
//! allocator, policy seam) and the thin async shells that drive it from the
//! Kubernetes API.

pub mod allocator;
pub mod ipam;
pub mod policy;
pub mod pools;
pub mod request;
