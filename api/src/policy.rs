//! `LoadBalancerPolicy`: who may take addresses from which pools.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, conditions_schema};
use crate::selector::LabelSelector;

/// CEL rules that decide which claims on the selected pools are allowed.
///
/// A claim on pool P is allowed iff every policy selecting P allows it (all of
/// its rules evaluate to true). Variables: `namespace`, `service`, `pool`,
/// `request` (see docs/policies.md).
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "barelb.io",
    version = "v1alpha1",
    kind = "LoadBalancerPolicy",
    status = "LoadBalancerPolicyStatus",
    shortname = "lbpolicy",
    shortname = "lbp",
    category = "barelb",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.ruleCount"}"#,
    printcolumn = r#"{"name":"Pools","type":"integer","description":"AddressPools it selects","jsonPath":".status.poolsSelected"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPolicySpec {
    /// AddressPools this policy governs, by label. Unset or empty: all pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_selector: Option<LabelSelector>,
    /// Rules that must all hold for a claim to be allowed.
    #[schemars(length(min = 1, max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<PolicyRule>,
    /// `Deny` (default): refuse the claim. `Warn`: admit it, with a warning
    /// and an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<PolicyAction>,
}

/// One CEL rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Unique within the policy; named in denials.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// CEL expression returning bool; true = allowed.
    #[schemars(length(min = 1, max = 4096))]
    pub expression: String,
    /// Message shown when the rule denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub message: Option<String>,
    /// CEL expression returning the message shown when the rule denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message_expression: Option<String>,
}

/// What a denying policy does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PolicyAction {
    /// Refuse the claim.
    #[default]
    Deny,
    /// Admit the claim, with a warning and an event.
    Warn,
}

/// Observed state of a LoadBalancerPolicy, written only by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of rules compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_count: Option<i32>,
    /// Number of AddressPools its `poolSelector` selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools_selected: Option<i32>,
    /// `Ready`: True when every rule compiled; False names the rule and position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

impl LoadBalancerPolicySpec {
    /// `action` with its default applied.
    pub fn action(&self) -> PolicyAction {
        self.action.unwrap_or_default()
    }
}
