//! barelb-operator as a library: the async shells that drive barelb-core's
//! decisions (IPAM, requests, allocation, candidate pools, planning, the
//! policy seam) from the Kubernetes API — watches and the index, status
//! writes, the admission webhook, the control channel, leader election and
//! metrics.

pub mod admission;
pub mod control;
pub mod controller;
pub mod events;
pub mod index;
pub mod leader;
pub mod log_once;
pub mod metrics;
pub mod policy;
pub mod pools;
pub mod retry;
pub mod serving_cert;
pub mod status;
pub mod webhook;
