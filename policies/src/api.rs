//! Reading barelb-api's LoadBalancerPolicy (feature `api`).

use barelb_api::{LoadBalancerPolicy, PolicyAction};

use crate::{Action, PolicySource, RuleSource};

impl PolicySource {
    /// A LoadBalancerPolicy as the engine reads it; the compile cache key is
    /// its `metadata.generation`.
    pub fn from_resource(p: &LoadBalancerPolicy) -> Self {
        PolicySource {
            name: p.metadata.name.clone().unwrap_or_default(),
            generation: p.metadata.generation.unwrap_or(0),
            action: match p.spec.action() {
                PolicyAction::Deny => Action::Deny,
                PolicyAction::Warn => Action::Warn,
            },
            rules: p
                .spec
                .rules
                .iter()
                .map(|r| RuleSource {
                    name: r.name.clone(),
                    expression: r.expression.clone(),
                    message: r.message.clone(),
                    message_expression: r.message_expression.clone(),
                })
                .collect(),
        }
    }
}
