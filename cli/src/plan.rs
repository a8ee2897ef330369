//! What a pool-repo change does to a cluster, decided by the operator's own
//! code: each new or changed object goes through the admission webhook's
//! review (what Argo CD's sync would meet), and both sides go through the
//! leader's reconcile of every Service (`controller::simulate`), so the
//! Services that would lose or change an address, or be denied by a policy,
//! are the ones the operator would change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use barelb_core::request::{ClassPolicy, ServiceKey};
use barelb_operator::admission::view::{Holding, holding};
use barelb_operator::admission::{self, View};
use barelb_operator::controller::Settings;
use barelb_operator::controller::simulate::{Forecast, simulate};
use barelb_operator::index::{Change, Index, Touched};
use barelb_operator::policy::CelPolicies;
use barelb_operator::status::ServiceStatus;
use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;
use serde::Serialize;

use crate::claims;
use crate::objects::{Objects, Origin};
use crate::snapshot::Snapshot;

/// The outcome, as `plan`'s exit code: 0 safe, 1 would break something,
/// 2 could not be evaluated (an object the webhook refuses, a file that
/// does not parse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Safe = 0,
    Breaks = 1,
    Unevaluable = 2,
}

/// One object's change.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectChange {
    pub kind: &'static str,
    pub name: String,
    /// "added", "removed", "changed", or what changed ("256 → 128 addresses").
    pub change: String,
    pub origin: String,
}

/// One Service whose status the change would change.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceChange {
    pub service: String,
    pub before: String,
    pub after: String,
    /// Loses or changes an address, or a claim now refused.
    pub breaks: bool,
    /// The condition's message after the change (names policy and rule).
    pub why: String,
}

/// Everything `plan` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub base: String,
    pub head: String,
    pub objects: Vec<ObjectChange>,
    /// The webhook's refusals of new or changed objects: `FILE:LINE: message`.
    pub refused: Vec<String>,
    pub services: Vec<ServiceChange>,
    /// Namespaces whose Services' claims the new policies refuse (they keep
    /// the addresses they hold; a new claim, a re-created Service, is
    /// refused): each Service with the refusal, which names policy and rule.
    pub denied_namespaces: BTreeMap<String, Vec<String>>,
    /// Namespaces whose Services' claims are newly allowed.
    pub allowed_namespaces: BTreeMap<String, Vec<String>>,
    pub verdict: Verdict,
}

/// How the operator is configured (its flags of the same names).
#[derive(Clone, Debug)]
pub struct OperatorFlags {
    pub class: String,
    pub handle_classless: bool,
    pub default_deny_pools: bool,
}

impl OperatorFlags {
    fn settings(&self) -> Settings {
        Settings {
            class: ClassPolicy {
                class: self.class.clone(),
                handle_classless: self.handle_classless,
            },
            namespace: "barelb-system".into(),
            pool_selector: String::new(),
            default_deny_pools: self.default_deny_pools,
            field_manager: "barelb-operator".into(),
            identity: "kubectl-barelb".into(),
            write_concurrency: 1,
        }
    }
}

/// The operator's index of `snapshot` with `objects` as its pools,
/// policies and peers.
pub fn index_of(objects: &Objects, snapshot: &Snapshot) -> Index {
    let mut index = Index::default();
    let mut t = Touched::default();
    for ns in &snapshot.namespaces {
        index.apply(Change::Namespace(Event::Apply(ns.clone())), &mut t);
    }
    for s in &snapshot.services {
        index.apply(Change::Service(Event::Apply(s.clone())), &mut t);
    }
    for (p, _) in objects.pools.values() {
        index.apply(
            Change::Pool(Event::Apply(DeserializeGuard(Ok(p.clone())))),
            &mut t,
        );
    }
    for (p, _) in objects.policies.values() {
        index.apply(
            Change::Policy(Event::Apply(DeserializeGuard(Ok(p.clone())))),
            &mut t,
        );
    }
    for (p, _) in objects.peers.values() {
        index.apply(
            Change::Peer(Event::Apply(DeserializeGuard(Ok(p.clone())))),
            &mut t,
        );
    }
    index
}

/// The webhook's view of `index`, as the operator publishes it.
pub fn view_of(index: &Index, flags: &OperatorFlags) -> View {
    let settings = flags.settings();
    let engine = Arc::new(barelb_policies::Engine::default());
    let held: Vec<Holding> = index
        .services
        .values()
        .filter_map(|svc| holding(svc, &settings.class))
        .collect();
    let policy = CelPolicies::from_index(engine.clone(), index, flags.default_deny_pools);
    View::from_index(
        index,
        &held,
        Arc::new(policy),
        &settings.class,
        flags.default_deny_pools,
        engine,
    )
}

/// The webhook's refusals of `objects` in the state `view` shows (each
/// pool against the others, each policy compiled, each peer checked),
/// limited to those `only` names (None: all), as `FILE:LINE: message`.
pub fn refusals(
    view: &View,
    objects: &Objects,
    only: Option<&BTreeSet<(&str, String)>>,
) -> Vec<String> {
    let wanted =
        |kind: &str, name: &str| only.is_none_or(|o| o.contains(&(kind, name.to_string())));
    let mut out = Vec::new();
    let mut note = |origin: &Origin, r: admission::Review| {
        if let Some(d) = r.denial {
            out.push(format!("{origin}: {d}"));
        }
    };
    for (name, (p, origin)) in &objects.pools {
        if wanted("AddressPool", name) {
            note(origin, admission::review_pool(view, Some(p), None));
        }
    }
    for (name, (p, origin)) in &objects.policies {
        if wanted("LoadBalancerPolicy", name) {
            note(origin, admission::review_policy(view, p));
        }
    }
    for (name, (p, origin)) in &objects.peers {
        if wanted("BGPPeer", name) {
            note(origin, admission::review_peer(p));
        }
    }
    out
}

/// Compares `base` with `head` against `snapshot`.
pub fn plan(
    base: (&str, &Objects),
    head: (&str, &Objects),
    snapshot: &Snapshot,
    flags: &OperatorFlags,
) -> Report {
    let objects = object_changes(base.1, head.1);
    let changed: BTreeSet<(&str, String)> = objects
        .iter()
        .filter(|c| c.change != "removed")
        .map(|c| (c.kind, c.name.clone()))
        .collect();
    let head_index = index_of(head.1, snapshot);
    let base_index = index_of(base.1, snapshot);
    let head_view = view_of(&head_index, flags);
    let refused = refusals(&head_view, head.1, Some(&changed));
    let settings = flags.settings();
    let (denied_namespaces, allowed_namespaces) = claims::judged(
        view_of(&base_index, flags),
        view_of(&head_index, flags),
        claims::unchanged_pools(&base_index, &head_index),
        &snapshot.services,
        &settings.class,
    );
    let before = simulate(&base_index, &settings);
    let after = simulate(&head_index, &settings);
    let mut services = Vec::new();
    for (key, a) in &after {
        let b = before
            .get(key)
            .map_or(&a.observed, |f: &Forecast| &f.desired);
        if *b != a.desired {
            services.push(service_change(key, b, &a.desired));
        }
    }
    let verdict = if !refused.is_empty() {
        Verdict::Unevaluable
    } else if services.iter().any(|s| s.breaks) || !denied_namespaces.is_empty() {
        Verdict::Breaks
    } else {
        Verdict::Safe
    };
    Report {
        base: base.0.to_string(),
        head: head.0.to_string(),
        objects,
        refused,
        services,
        denied_namespaces,
        allowed_namespaces,
        verdict,
    }
}

fn reason(s: &ServiceStatus) -> &str {
    s.condition.as_ref().map_or("", |c| c.reason.as_str())
}

fn describe(s: &ServiceStatus) -> String {
    if s.ips.is_empty() {
        return match &s.condition {
            Some(c) => format!("no address ({})", c.reason),
            None => "not served".into(),
        };
    }
    let ips: Vec<String> = s.ips.iter().map(ToString::to_string).collect();
    match (&s.pool, reason(s)) {
        (Some(p), "Allocated") => format!("{} from {p}", ips.join(", ")),
        (_, r) => format!("{} ({r})", ips.join(", ")),
    }
}

fn service_change(
    key: &ServiceKey,
    before: &ServiceStatus,
    after: &ServiceStatus,
) -> ServiceChange {
    let lost = before.ips.iter().any(|ip| !after.ips.contains(ip));
    let outside = !after.ips.is_empty() && after.pool.is_none() && before.pool.is_some();
    let refused = after.ips.is_empty()
        && reason(after) != reason(before)
        && after
            .condition
            .as_ref()
            .is_some_and(|c| c.status == "False");
    ServiceChange {
        service: key.to_string(),
        before: describe(before),
        after: describe(after),
        breaks: lost || outside || refused,
        why: after
            .condition
            .as_ref()
            .map(|c| c.message.clone())
            .unwrap_or_default(),
    }
}

/// Objects added, removed or changed between the sides.
pub fn object_changes(base: &Objects, head: &Objects) -> Vec<ObjectChange> {
    let mut out = Vec::new();
    let size = |p: &barelb_api::AddressPool| -> u128 {
        barelb_operator::pools::pool_def(p)
            .ranges
            .iter()
            .map(|r| r.size())
            .sum()
    };
    diff(&base.pools, &head.pools, "AddressPool", &mut out, |b, h| {
        let (s0, s1) = (size(b), size(h));
        if s0 != s1 {
            format!(
                "{} → {} addresses",
                barelb_core::ipam::display_count(s0),
                barelb_core::ipam::display_count(s1)
            )
        } else {
            "changed".into()
        }
    });
    diff(
        &base.policies,
        &head.policies,
        "LoadBalancerPolicy",
        &mut out,
        |_, _| "changed".into(),
    );
    diff(&base.peers, &head.peers, "BGPPeer", &mut out, |_, _| {
        "changed".into()
    });
    out
}

fn diff<T: Serialize>(
    base: &BTreeMap<String, (T, Origin)>,
    head: &BTreeMap<String, (T, Origin)>,
    kind: &'static str,
    out: &mut Vec<ObjectChange>,
    what: impl Fn(&T, &T) -> String,
) {
    let spec = |o: &T| serde_json::to_value(o).map(|v| v["spec"].clone()).ok();
    for (name, (h, origin)) in head {
        let change = match base.get(name) {
            None => "added".to_string(),
            Some((b, _)) if spec(b) != spec(h) => what(b, h),
            Some((b, _)) if serde_json::to_value(b).ok() != serde_json::to_value(h).ok() => {
                "labels or annotations changed".into()
            }
            Some(_) => continue,
        };
        out.push(ObjectChange {
            kind,
            name: name.clone(),
            change,
            origin: origin.to_string(),
        });
    }
    for (name, (_, origin)) in base {
        if !head.contains_key(name) {
            out.push(ObjectChange {
                kind,
                name: name.clone(),
                change: "removed".into(),
                origin: origin.to_string(),
            });
        }
    }
}
