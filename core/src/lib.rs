//! barelb's decisions as plain Rust: plain types in, decisions out. No
//! Kubernetes client, no tokio, no tonic (`tests/no_runtime.rs` checks the
//! dependency tree), so the operator, its admission webhook and the CLI all
//! call the same functions and cannot disagree.

pub mod duration;
