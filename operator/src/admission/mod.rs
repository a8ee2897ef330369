//! What the admission webhook decides, as plain Rust over a snapshot of the
//! operator's index: the same pool definitions, readiness rules, request
//! parsing, sharing rules and policy engine the allocator uses, so a claim
//! the webhook admits is one the allocator grants and a claim it refuses is
//! one the allocator would refuse too.

mod peer;
mod policy;
mod pool;
mod service;
#[cfg(test)]
mod tests;
pub mod view;

pub use peer::review_peer;
pub use policy::review_policy;
pub use pool::review_pool;
pub use service::review_service;
pub use view::View;

/// Names sorted, the first `at_most` joined by commas, the rest counted
/// ("a, b and 3 more"): denial and warning lines stay one readable line.
fn some_of(mut names: Vec<String>, at_most: usize) -> String {
    names.sort();
    let n = names.len();
    let mut listed = names
        .into_iter()
        .take(at_most)
        .collect::<Vec<_>>()
        .join(", ");
    if n > at_most {
        listed.push_str(&format!(" and {} more", n - at_most));
    }
    listed
}

/// The webhook's answer for one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// Set when the object is refused: one line naming it and the fix.
    pub denial: Option<String>,
    /// The LoadBalancerPolicy behind a denial, for metrics.
    pub denied_by: Option<String>,
    pub warnings: Vec<String>,
}

impl Review {
    pub fn allow() -> Self {
        Review::default()
    }

    pub fn deny(message: String) -> Self {
        Review {
            denial: Some(message),
            ..Review::default()
        }
    }

    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}
