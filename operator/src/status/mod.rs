//! What the operator writes back: a Service's ingress and its
//! `barelb.io/Allocated` condition (which names the pool: one write per
//! Service), an AddressPool's capacity and Ready condition — and which
//! events a change deserves. Pure functions from state to desired objects; the controller
//! applies them with server-side apply.

pub mod announced;
pub mod resources;

use std::net::IpAddr;

use barelb_api::{AddressPool, conditions};
use barelb_core::request::ServiceRecord;
use serde_json::{Value, json};

use barelb_core::allocator::{Allocator, Outcome};
use barelb_core::ipam::{Family, display_count};

/// The operator's part of one Service's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    pub ips: Vec<IpAddr>,
    /// None: barelb no longer manages the Service (remove its condition).
    pub condition: Option<CondSpec>,
    /// The pool the condition names (an allocation's; none for a failure,
    /// whose kept addresses are planned with the pool that owns them).
    pub pool: Option<String>,
}

/// The `barelb.io/Allocated` condition without its timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondSpec {
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

/// An event to publish on the Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl ServiceStatus {
    /// The status an outcome calls for.
    pub fn from_outcome(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Allocated { alloc, note, .. } => {
                let ips = alloc
                    .ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let (reason, message) = match (note, &alloc.pool) {
                    (Some(n), None) => ("OutsidePool".to_string(), format!("{ips}: {n}")),
                    (Some(n), Some(p)) => (
                        "PartiallyAllocated".to_string(),
                        format!("{ips} from AddressPool {p}; {n}"),
                    ),
                    (None, Some(p)) => (
                        "Allocated".to_string(),
                        format!("{ips} from AddressPool {p}"),
                    ),
                    (None, None) => ("Allocated".to_string(), ips),
                };
                ServiceStatus {
                    ips: alloc.ips.clone(),
                    condition: Some(CondSpec {
                        status: "True",
                        reason,
                        message: barelb_core::text::one_line(&message).into_owned(),
                    }),
                    pool: alloc.pool.clone(),
                }
            }
            Outcome::Failed {
                reason,
                message,
                kept,
            } => ServiceStatus {
                ips: kept.ips.clone(),
                condition: Some(CondSpec {
                    status: "False",
                    reason: reason.as_str().to_string(),
                    message: barelb_core::text::one_line(message).into_owned(),
                }),
                pool: None,
            },
        }
    }

    /// The status of a Service barelb no longer manages.
    pub fn released() -> Self {
        ServiceStatus {
            ips: Vec::new(),
            condition: None,
            pool: None,
        }
    }

    /// What `svc` shows now.
    pub fn observed(svc: &ServiceRecord) -> Self {
        let cond = svc.condition(conditions::ALLOCATED).map(|c| CondSpec {
            status: match c.status.as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            },
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
        ServiceStatus {
            ips: svc.ingress.clone(),
            pool: cond.as_ref().and_then(pool_named),
            condition: cond,
        }
    }

    /// The server-side-apply body for the Service's status subresource.
    /// `since` is the transition time to record if the condition's status
    /// changed; otherwise the old time is kept.
    pub fn status_patch(&self, svc: &ServiceRecord, now: &str) -> Value {
        let ingress: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
            .collect();
        let observed = Self::observed(svc);
        let old_time = svc
            .condition(conditions::ALLOCATED)
            .map(|c| c.last_transition_time.0.to_string());
        let conds: Vec<Value> = match &self.condition {
            Some(c) => {
                let time = match (&observed.condition, old_time) {
                    (Some(o), Some(t)) if o.status == c.status => t,
                    _ => now.to_string(),
                };
                vec![json!({
                    "type": conditions::ALLOCATED,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "lastTransitionTime": time,
                    "observedGeneration": svc.generation,
                })]
            }
            None => Vec::new(),
        };
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": svc.key.name, "namespace": svc.key.namespace},
            "status": {"loadBalancer": {"ingress": ingress}, "conditions": conds},
        })
    }

    /// The events that moving from `before` to `self` deserves: one per change.
    pub fn events(&self, before: &ServiceStatus) -> Vec<EventSpec> {
        let mut out = Vec::new();
        let added: Vec<String> = self
            .ips
            .iter()
            .filter(|ip| !before.ips.contains(ip))
            .map(ToString::to_string)
            .collect();
        let removed: Vec<String> = before
            .ips
            .iter()
            .filter(|ip| !self.ips.contains(ip))
            .map(ToString::to_string)
            .collect();
        if !removed.is_empty() {
            out.push(EventSpec {
                warning: false,
                reason: "IPReleased",
                note: format!("released {}", removed.join(", ")),
            });
        }
        if !added.is_empty() {
            let from = self
                .pool
                .as_deref()
                .map(|p| format!(" from AddressPool {p}"))
                .unwrap_or_default();
            out.push(EventSpec {
                warning: false,
                reason: "IPAllocated",
                note: format!("allocated {}{from}", added.join(", ")),
            });
        }
        if let Some(c) = &self.condition {
            let changed = before
                .condition
                .as_ref()
                .is_none_or(|b| b.reason != c.reason || b.message != c.message);
            if c.status == "False" && changed {
                out.push(EventSpec {
                    warning: true,
                    reason: "AllocationFailed",
                    note: format!("{}: {}", c.reason, c.message),
                });
            }
        }
        out
    }
}

/// The pool an Allocated condition names ("… from AddressPool NAME" or
/// "… from AddressPool NAME; note", as `from_outcome` writes it).
fn pool_named(c: &CondSpec) -> Option<String> {
    if c.reason != "Allocated" && c.reason != "PartiallyAllocated" {
        return None;
    }
    let (_, rest) = c.message.split_once(" from AddressPool ")?;
    let name = rest.split(';').next().unwrap_or(rest).trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The server-side-apply body for an AddressPool's status, or None when the
/// pool already shows it.
pub fn pool_status_patch(pool: &AddressPool, alloc: &Allocator, now: &str) -> Option<Value> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let usage = alloc.usage(&name);
    let fam = |f: Family| {
        usage
            .iter()
            .find(|u| u.0 == f)
            .map(|(_, t, a)| json!({"total": t.to_string(), "allocated": a.to_string()}))
    };
    let summary = usage
        .iter()
        .map(|(_, t, a)| format!("{a}/{}", display_count(*t)))
        .collect::<Vec<_>>()
        .join(" ");
    let (status, reason, message) = match alloc.readiness(&name) {
        Some(Ok(())) => ("True", "InForce", "addresses are allocatable".to_string()),
        Some(Err(why)) => (
            "False",
            "Invalid",
            barelb_core::text::one_line(&why).into_owned(),
        ),
        None => ("Unknown", "Pending", "not yet processed".to_string()),
    };
    let current = pool.status.clone().unwrap_or_default();
    let current_cond = current
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == conditions::READY));
    let unchanged = current.observed_generation == pool.metadata.generation
        && current.usage.as_deref() == Some(summary.as_str())
        && serde_json::to_value(&current.ipv4).ok() == Some(fam(Family::V4).unwrap_or(Value::Null))
        && serde_json::to_value(&current.ipv6).ok() == Some(fam(Family::V6).unwrap_or(Value::Null))
        && current_cond
            .is_some_and(|c| c.status == status && c.reason == reason && c.message == message);
    if unchanged {
        return None;
    }
    let time = match current_cond {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.to_string(),
    };
    let mut st = json!({
        "observedGeneration": pool.metadata.generation,
        "usage": summary,
        "conditions": [{
            "type": conditions::READY, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": time, "observedGeneration": pool.metadata.generation,
        }],
    });
    for (f, key) in [(Family::V4, "ipv4"), (Family::V6, "ipv6")] {
        if let Some(v) = fam(f) {
            st[key] = v;
        }
    }
    Some(
        json!({"apiVersion": "barelb.io/v1alpha1", "kind": "AddressPool", "metadata": {"name": name}, "status": st}),
    )
}

/// Now, as Kubernetes writes times (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
