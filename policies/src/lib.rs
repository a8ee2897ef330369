//! barelb's policy engine for LoadBalancerPolicy rules: CEL expressions
//! compiled once per policy generation and evaluated against the claim's
//! variables (`namespace`, `service`, `pool`, `request`) with the CEL
//! standard library plus Kubernetes' extensions (ip, cidr, strings, lists).
//!
//! Plain Rust with no Kubernetes client, so the webhook and the allocator
//! share one engine. Evaluation is bounded: expression length, input size
//! and wall time; a panic inside the interpreter becomes a denial with a
//! clear reason, never a crashed process.

#[cfg(feature = "api")]
mod api;
mod engine;
mod inputs;

pub use engine::{
    Action, CompileError, CompiledPolicy, Engine, Limits, PolicySource, RuleSource, Variables,
    Verdict,
};
pub use inputs::{Inputs, NamespaceInput, PoolInput, PortInput, RequestInput, ServiceInput};
