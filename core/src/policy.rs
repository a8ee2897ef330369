//! The seam through which the allocator and the webhook ask whether a claim
//! on a pool is allowed. The CEL policies (`cel_policy`) implement it;
//! [`AllowAll`] stands in before the first policies are loaded.

use std::net::IpAddr;

use crate::pools::PoolDef;
use crate::request::Request;

/// One claim on one pool.
#[derive(Debug)]
pub struct Claim<'a> {
    pub request: &'a Request,
    pub pool: &'a PoolDef,
    /// True when the Service named neither a pool nor addresses.
    pub automatic: bool,
    /// The addresses asked for explicitly, if any.
    pub ips: &'a [IpAddr],
}

/// A policy's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed, with a warning (policy action `Warn`).
    Warn(String),
    /// Refused: one line naming the policy, rule and fix.
    Deny(Denied),
}

/// A refusal: the one-line message, and the LoadBalancerPolicy behind it
/// (None when no policy selects the pool and unselected pools are denied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub policy: Option<String>,
    pub message: String,
}

impl Decision {
    /// A refusal that no particular policy made.
    pub fn deny(message: String) -> Self {
        Decision::Deny(Denied {
            policy: None,
            message,
        })
    }
}

/// Decides claims. Implementations must be cheap and never block.
pub trait PolicyCheck: Send + Sync + std::fmt::Debug {
    fn check(&self, claim: &Claim<'_>) -> Decision;
}

/// Allows every claim.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl PolicyCheck for AllowAll {
    fn check(&self, _claim: &Claim<'_>) -> Decision {
        Decision::Allow
    }
}
