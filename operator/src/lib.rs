//! barelb-operator as a library: the plain-Rust core (IPAM, requests, pools,
//! allocator, policy seam) and the thin async shells that drive it from the
//! Kubernetes API.

pub mod admission;
pub mod allocator;
pub mod announce;
pub mod announced;
pub mod candidates;
pub mod cel_policy;
pub mod control;
pub mod controller;
pub mod index;
pub mod ipam;
pub mod leader;
pub mod metrics;
pub mod planner;
pub mod policy;
pub mod pools;
pub mod publish;
pub mod request;
pub mod retry;
pub mod status;
pub mod webhook;
