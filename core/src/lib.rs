//! barelb's decisions as plain Rust: plain types in, decisions out. No
//! Kubernetes client, no tokio, no tonic (`tests/no_runtime.rs` checks the
//! dependency tree); Kubernetes objects arrive as k8s-openapi's plain
//! structs. The operator, its admission webhook and the CLI all call the
//! same functions, so they cannot disagree.

pub mod allocator;
pub mod candidates;
pub mod duration;
pub mod ipam;
pub mod names;
pub mod planner;
pub mod policy;
pub mod pools;
pub mod request;
pub mod selector;
pub mod sharing;
pub mod text;
