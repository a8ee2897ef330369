//! The leader's status writes for LoadBalancerPolicies (compiled, pools
//! selected) and BGPPeers (nodes established of those announcing to it).

use std::collections::BTreeMap;
use std::fmt::Debug;

use barelb_api::{BGPPeer, LoadBalancerPolicy};
use barelb_core::planner::Plan;
use barelb_policies::{Engine, PolicySource};
use kube::api::{Api, Patch, PatchParams};
use kube::core::ClusterResourceScope;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::reconcile::Leading;
use super::writes::Context;
use crate::control::hub::Sessions;
use crate::index::Index;
use crate::metrics::PolicyLabels;
use crate::status::now_rfc3339;
use crate::status::resources::{peer_nodes, peer_ready, peer_status_patch, policy_status_patch};

/// Every policy's status: whether it compiles and how many pools it selects.
pub(super) async fn write_policies(
    ctx: &Context<'_>,
    state: &mut Leading,
    index: &Index,
    engine: &Engine,
) {
    let now = now_rfc3339();
    let policies: Vec<&LoadBalancerPolicy> = index.policies.values().collect();
    // Rebuilt whole: a deleted policy's series goes with it.
    ctx.metrics.policy_ready.clear();
    for policy in policies {
        // Cached per generation: this costs nothing once compiled.
        let compiled = engine
            .compile(&PolicySource::from_resource(policy))
            .map(|c| c.rule_count())
            .map_err(|e| e.to_string());
        let selector = policy.spec.pool_selector.clone().unwrap_or_default();
        let pools = index
            .pools
            .values()
            .filter(|p| selector.matches(p.labels()))
            .count();
        if scoped(ctx) && pools == 0 {
            continue;
        }
        ctx.metrics
            .policy_ready
            .get_or_create(&PolicyLabels {
                policy: policy.name_any(),
            })
            .set(i64::from(compiled.is_ok()));
        if let Some(body) = policy_status_patch(policy, &compiled, pools, &now) {
            apply_status::<LoadBalancerPolicy>(ctx, state, &policy.name_any(), body).await;
        }
    }
}

/// Every peer's status from the plan (who announces to it) and the
/// speakers' session reports.
pub(super) async fn write_peers(
    ctx: &Context<'_>,
    state: &mut Leading,
    index: &Index,
    plan: &Plan,
    sessions: &Sessions,
    configured: &BTreeMap<String, barelb_control::v1::BgpPeer>,
) {
    let now = now_rfc3339();
    let peers: Vec<&BGPPeer> = index.peers.values().collect();
    for peer in peers {
        let name = peer.name_any();
        let (selected, established) = peer_nodes(plan, sessions, &name);
        if scoped(ctx) && selected.is_empty() {
            continue;
        }
        let ready = peer_ready(
            configured.contains_key(&name),
            &selected,
            &established,
            sessions,
            &name,
        );
        let body = peer_status_patch(peer, selected.len(), established.len(), &ready, &now);
        if let Some(body) = body {
            apply_status::<BGPPeer>(ctx, state, &name, body).await;
        }
    }
}

/// An instance limited to some pools (`--pool-selector`) reports only on
/// the policies and peers its pools use: others are another instance's.
fn scoped(ctx: &Context<'_>) -> bool {
    !ctx.settings.pool_selector.is_empty()
}

/// Server-side applies a status body to the cluster-scoped `K` named
/// `name`, unless the same body (timestamps aside) was written already and
/// not seen back yet.
async fn apply_status<K>(ctx: &Context<'_>, state: &mut Leading, name: &str, body: Value)
where
    K: Resource<Scope = ClusterResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = K::kind(&());
    let key = format!("{kind}/{name}");
    let mut cmp = body.clone();
    cmp["status"]["conditions"][0]["lastTransitionTime"] = Value::Null;
    if state.status_written.get(&key) == Some(&cmp) {
        return;
    }
    let api: Api<K> = Api::all(ctx.client.clone());
    let res = api
        .patch_status(
            name,
            &PatchParams::apply(&ctx.settings.field_manager).force(),
            &Patch::Apply(body),
        )
        .await;
    ctx.metrics
        .count_write(&format!("{}_status", kind.to_lowercase()), res.is_ok());
    match res {
        Ok(_) => {
            state.status_written.insert(key, cmp);
        }
        Err(e) => tracing::warn!(object = %key, error = %e, "status write failed"),
    }
}
