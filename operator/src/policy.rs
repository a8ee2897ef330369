//! The allocator's policy check backed by LoadBalancerPolicies and the CEL
//! engine: a claim on a pool is allowed iff every policy selecting the pool
//! allows it; a pool no policy selects is open unless `--default-deny-pools`.
//! A policy that does not compile refuses every claim on its pools (fail
//! closed) and says why.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;

use barelb_api::{LabelSelector, LoadBalancerPolicy};
use barelb_policies::{
    Action, CompiledPolicy, Engine, Inputs, NamespaceInput, PolicySource, PoolInput, PortInput,
    RequestInput, ServiceInput, Variables, Verdict,
};

use crate::index::{Index, NamespaceMeta};
use barelb_core::policy::{Claim, Decision, Denied, PolicyCheck};

struct Loaded {
    selector: LabelSelector,
    compiled: Result<Arc<CompiledPolicy>, String>,
}

/// A snapshot of the policies and namespaces, rebuilt when either changes.
pub struct CelPolicies {
    engine: Arc<Engine>,
    policies: Vec<(String, Loaded)>,
    namespaces: BTreeMap<String, NamespaceMeta>,
    default_deny: bool,
    /// Observes the time to evaluate the policies for one claim.
    timer: Option<Histogram>,
}

impl std::fmt::Debug for CelPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelPolicies")
            .field("policies", &self.policies.len())
            .field("default_deny", &self.default_deny)
            .finish()
    }
}

impl CelPolicies {
    pub fn new(
        engine: Arc<Engine>,
        policies: &[&LoadBalancerPolicy],
        namespaces: BTreeMap<String, NamespaceMeta>,
        default_deny: bool,
    ) -> Self {
        let compiled = policies
            .iter()
            .map(|p| {
                let src = PolicySource::from_resource(p);
                let compiled = engine.compile(&src).map_err(|e| e.to_string());
                (
                    src.name,
                    p.spec.pool_selector.clone().unwrap_or_default(),
                    compiled,
                )
            })
            .collect();
        Self::from_compiled(engine, compiled, namespaces, default_deny)
    }

    /// From the policies and namespaces in the index.
    pub fn from_index(engine: Arc<Engine>, index: &Index, default_deny: bool) -> Self {
        let policies: Vec<&LoadBalancerPolicy> = index.policies.values().collect();
        Self::new(engine, &policies, index.namespace_meta(), default_deny)
    }

    /// From policies already compiled: `(name, poolSelector, compiled or why not)`.
    pub fn from_compiled(
        engine: Arc<Engine>,
        compiled: Vec<(String, LabelSelector, Result<Arc<CompiledPolicy>, String>)>,
        namespaces: BTreeMap<String, NamespaceMeta>,
        default_deny: bool,
    ) -> Self {
        let mut policies: Vec<(String, Loaded)> = compiled
            .into_iter()
            .map(|(name, selector, compiled)| (name, Loaded { selector, compiled }))
            .collect();
        policies.sort_by(|a, b| a.0.cmp(&b.0));
        CelPolicies {
            engine,
            policies,
            namespaces,
            default_deny,
            timer: None,
        }
    }

    /// Records evaluation latency in `h`.
    pub fn with_timer(mut self, h: Histogram) -> Self {
        self.timer = Some(h);
        self
    }

    fn inputs(&self, claim: &Claim<'_>) -> Inputs {
        let req = claim.request;
        let ns = &req.key.namespace;
        let meta = self.namespaces.get(ns).cloned().unwrap_or_default();
        Inputs {
            namespace: NamespaceInput {
                name: ns.clone(),
                labels: meta.labels,
                annotations: meta.annotations,
            },
            service: ServiceInput {
                name: req.key.name.clone(),
                namespace: ns.clone(),
                labels: req.labels.clone(),
                annotations: req.annotations.clone(),
                ports: req
                    .ports
                    .iter()
                    .zip(
                        req.port_names
                            .iter()
                            .chain(std::iter::repeat(&String::new())),
                    )
                    .map(|(p, n)| PortInput {
                        name: n.clone(),
                        port: i64::from(p.port),
                        protocol: p.protocol.clone(),
                    })
                    .collect(),
                external_traffic_policy: req.external_traffic_policy.clone(),
                ip_families: req
                    .families
                    .iter()
                    .map(|f| f.k8s_name().to_string())
                    .collect(),
                load_balancer_class: req.class.clone(),
                sharing_key: req.sharing_key.clone().unwrap_or_default(),
            },
            pool: PoolInput {
                name: claim.pool.name.clone(),
                labels: claim.pool.labels.clone(),
                addresses: claim.pool.entries.clone(),
            },
            request: RequestInput {
                pool: req.pool.clone().unwrap_or_default(),
                ips: claim.ips.iter().map(ToString::to_string).collect(),
                automatic: claim.automatic,
            },
        }
    }
}

impl PolicyCheck for CelPolicies {
    fn check(&self, claim: &Claim<'_>) -> Decision {
        let ns = &claim.request.key.namespace;
        let pool = &claim.pool.name;
        let selecting: Vec<&(String, Loaded)> = self
            .policies
            .iter()
            .filter(|(_, l)| l.selector.matches(&claim.pool.labels))
            .collect();
        if selecting.is_empty() {
            return if self.default_deny {
                Decision::deny(format!(
                    "namespace {ns} may not use AddressPool {pool}: no LoadBalancerPolicy selects it and the operator denies unselected pools; add a policy for the pool"
                ))
            } else {
                Decision::Allow
            };
        }
        if !self.namespaces.contains_key(ns) {
            // Judging an unseen namespace by empty labels could allow what
            // its labels forbid. It exists (the apiserver admitted the
            // Service into it); our watch is a moment behind. Refuse for now:
            // the controller re-judges when the namespace arrives, and the
            // webhook waits for it first.
            return Decision::deny(format!(
                "namespace {ns} is not known to barelb yet, so the policies on AddressPool {pool} cannot be checked; retry in a moment"
            ));
        }
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "policy",
            namespace = %ns,
            pool = %pool,
            policies = selecting.len(),
            verdict = tracing::field::Empty,
        );
        let decision = span.in_scope(|| self.decide(claim, &selecting));
        span.record(
            "verdict",
            match &decision {
                Decision::Allow => "allow",
                Decision::Warn(_) => "warn",
                Decision::Deny(_) => "deny",
            },
        );
        if let Some(t) = &self.timer {
            t.observe(started.elapsed().as_secs_f64());
        }
        decision
    }
}

impl CelPolicies {
    fn decide(&self, claim: &Claim<'_>, selecting: &[&(String, Loaded)]) -> Decision {
        let ns = &claim.request.key.namespace;
        let pool = &claim.pool.name;
        // Converted once for every policy that judges this claim.
        let inputs = Variables::new(&self.inputs(claim));
        let mut warnings = Vec::new();
        for (name, loaded) in selecting.iter().copied() {
            let compiled = match &loaded.compiled {
                Ok(c) => c,
                Err(e) => {
                    return Decision::Deny(Denied {
                        policy: Some(name.clone()),
                        message: format!(
                            "AddressPool {pool} is governed by a policy that does not compile ({e}); fix LoadBalancerPolicy {name}"
                        ),
                    });
                }
            };
            match self.engine.judge(compiled, &inputs) {
                Verdict::Allow => {}
                Verdict::Refuse {
                    action,
                    policy,
                    rule,
                    message,
                } => {
                    let line = format!(
                        "namespace {ns} may not use AddressPool {pool}: LoadBalancerPolicy {policy} rule {rule}: {message}"
                    );
                    match action {
                        Action::Deny => {
                            return Decision::Deny(Denied {
                                policy: Some(policy),
                                message: line,
                            });
                        }
                        Action::Warn => warnings.push(line),
                    }
                }
            }
        }
        if warnings.is_empty() {
            Decision::Allow
        } else {
            Decision::Warn(warnings.join("; "))
        }
    }
}
