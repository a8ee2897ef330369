//! What a Service asks of barelb, read from its spec and annotations. Plain
//! Rust over the Service object; every malformed request becomes one
//! [`InvalidRequest`] line that names the annotation and the fix.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::names::{LAST_APPLIED_ANNOTATION, LOAD_BALANCER_CLASS, annotations};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;

use crate::ipam::Family;

mod cleanup;
mod record;
pub use cleanup::{FinalizerStep, finalizer_step};
pub use record::{LoadBalancer, ServiceRecord};

/// `namespace/name` of a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ServiceKey {
    /// The key of `svc`.
    pub fn of(svc: &Service) -> Self {
        ServiceKey {
            namespace: svc.metadata.namespace.clone().unwrap_or_default(),
            name: svc.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// One port of a Service, for the sharing rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub protocol: String,
    pub port: i32,
}

/// A qualifying Service's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub key: ServiceKey,
    /// Creation time, then key: the order of precedence when two Services
    /// want one address.
    pub created: Option<Timestamp>,
    /// Families in the Service's order; the first is required.
    pub families: Vec<Family>,
    /// Whether every family is required (SingleStack, RequireDualStack) or
    /// only the first (PreferDualStack).
    pub require_all_families: bool,
    /// `barelb.io/pool`.
    pub pool: Option<String>,
    /// `barelb.io/ips` or `spec.loadBalancerIP`, at most one per family.
    pub ips: Vec<IpAddr>,
    /// `barelb.io/sharing-key`.
    pub sharing_key: Option<String>,
    pub ports: Vec<PortKey>,
    /// Port names, in the order of `ports` (for policies).
    pub port_names: Vec<String>,
    /// `Local` or `Cluster`.
    pub external_traffic_policy: String,
    /// The Service's labels and annotations and class (for policies).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub class: String,
}

/// A malformed request, as one line for the Service's condition and event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

/// Which Services this operator serves: those of `class`, and class-less
/// ones when `handle_classless`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassPolicy {
    pub class: String,
    pub handle_classless: bool,
}

impl Default for ClassPolicy {
    fn default() -> Self {
        ClassPolicy {
            class: LOAD_BALANCER_CLASS.to_string(),
            handle_classless: true,
        }
    }
}

/// Whether barelb is responsible for `svc`: a LoadBalancer of its class
/// whose deletion has not begun.
pub fn qualifies(svc: &ServiceRecord, class: &ClassPolicy) -> bool {
    !svc.deleting && of_class(svc, class)
}

/// A LoadBalancer Service of a class this instance serves, deleting or not.
fn of_class(svc: &ServiceRecord, class: &ClassPolicy) -> bool {
    let Some(lb) = &svc.load_balancer else {
        return false;
    };
    match lb.class.as_deref() {
        Some(c) => c == class.class,
        None => class.handle_classless,
    }
}

/// Reads the request of a qualifying Service.
pub fn parse(svc: &Service) -> Result<Request, InvalidRequest> {
    let key = ServiceKey::of(svc);
    let spec = svc.spec.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let ann = svc.metadata.annotations.as_ref().unwrap_or(&empty);

    let mut families: Vec<Family> = Vec::new();
    for f in spec.ip_families.iter().flatten() {
        let family = match f.as_str() {
            "IPv4" => Family::V4,
            "IPv6" => Family::V6,
            other => {
                return Err(InvalidRequest(format!(
                    "spec.ipFamilies has unknown family {other:?}"
                )));
            }
        };
        if !families.contains(&family) {
            families.push(family);
        }
    }
    let policy = spec.ip_family_policy.as_deref().unwrap_or("SingleStack");
    if families.is_empty() {
        families.push(Family::V4);
    }
    match policy {
        "SingleStack" => families.truncate(1),
        "PreferDualStack" | "RequireDualStack" => {
            // The apiserver fills ipFamilies for dual-stack clusters; on a
            // single-stack cluster add the other family ourselves.
            let other = if families[0] == Family::V4 {
                Family::V6
            } else {
                Family::V4
            };
            if !families.contains(&other) {
                families.push(other);
            }
        }
        other => {
            return Err(InvalidRequest(format!(
                "spec.ipFamilyPolicy {other:?} is not one barelb knows"
            )));
        }
    }
    let require_all_families = policy != "PreferDualStack";

    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(raw) = ann.get(annotations::IPS) {
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let ip: IpAddr = part.parse().map_err(|_| {
                InvalidRequest(format!(
                    "annotation {}: {part:?} is not an IP address; write e.g. 10.0.10.5 or 10.0.10.5,2001:db8::5",
                    annotations::IPS
                ))
            })?;
            if ips.iter().any(|known| Family::of(known) == Family::of(&ip)) {
                return Err(InvalidRequest(format!(
                    "annotation {} has two {} addresses; give at most one per family",
                    annotations::IPS,
                    Family::of(&ip).k8s_name()
                )));
            }
            ips.push(ip);
        }
        if ips.is_empty() {
            return Err(InvalidRequest(format!(
                "annotation {} is empty; remove it or give an address",
                annotations::IPS
            )));
        }
    }
    if let Some(lb_ip) = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty()) {
        let ip: IpAddr = lb_ip.parse().map_err(|_| {
            InvalidRequest(format!(
                "spec.loadBalancerIP {lb_ip:?} is not an IP address"
            ))
        })?;
        if ips.is_empty() {
            ips.push(ip);
        } else if !ips.contains(&ip) {
            return Err(InvalidRequest(format!(
                "spec.loadBalancerIP {ip} disagrees with annotation {}; set only one of them",
                annotations::IPS
            )));
        }
    }
    for ip in &ips {
        if !families.contains(&Family::of(ip)) {
            return Err(InvalidRequest(format!(
                "requested address {ip} is {} but the Service's ipFamilies are {}; change ipFamilies/ipFamilyPolicy or the address",
                Family::of(ip).k8s_name(),
                families
                    .iter()
                    .map(|f| f.k8s_name())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
    }

    let pool = ann.get(annotations::POOL).map(|p| p.trim().to_string());
    if pool.as_deref() == Some("") {
        return Err(InvalidRequest(format!(
            "annotation {} is empty; name an AddressPool",
            annotations::POOL
        )));
    }
    let sharing_key = ann
        .get(annotations::SHARING_KEY)
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());

    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| PortKey {
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            port: p.port,
        })
        .collect();

    Ok(Request {
        key,
        created: svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
        families,
        require_all_families,
        pool,
        ips,
        sharing_key,
        ports,
        port_names: spec
            .ports
            .iter()
            .flatten()
            .map(|p| p.name.clone().unwrap_or_default())
            .collect(),
        external_traffic_policy: spec
            .external_traffic_policy
            .unwrap_or_else(|| "Cluster".into()),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        annotations: ann
            .iter()
            .filter(|(k, _)| *k != LAST_APPLIED_ANNOTATION)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        class: spec.load_balancer_class.unwrap_or_default(),
    })
}

/// A request that holds exactly `ips` and shares nothing: how a Service
/// whose annotations cannot be read is restored, so it keeps its addresses.
pub fn minimal(svc: &ServiceRecord, ips: &[IpAddr]) -> Request {
    let mut families: Vec<Family> = ips.iter().map(Family::of).collect();
    families.dedup();
    Request {
        key: svc.key.clone(),
        created: svc.created,
        families,
        require_all_families: true,
        pool: None,
        ips: ips.to_vec(),
        sharing_key: None,
        ports: Vec::new(),
        port_names: Vec::new(),
        external_traffic_policy: "Cluster".into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        class: String::new(),
    }
}

/// What a Service holds, read from its status (the source of truth). Its
/// pool is the one that owns the addresses (`pools::owner`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// `status.loadBalancer.ingress`, never empty.
    pub ips: Vec<IpAddr>,
}

/// What a Service this instance handles holds; None when the Service is
/// not ours or holds nothing. The one reading of "what a Service has" for
/// the allocator's rebuild, the webhook's view, planning and status. A
/// Service whose deletion has begun still holds its addresses until it is
/// gone: its status shows them, so no other Service is given them
/// meanwhile (planning withdraws them at once: the operator's
/// `Index::pooled`).
pub fn held(svc: &ServiceRecord, class: &ClassPolicy) -> Option<Held> {
    if !of_class(svc, class) || svc.ingress.is_empty() {
        return None;
    }
    Some(Held {
        ips: svc.ingress.clone(),
    })
}

impl Held {
    /// The request this holding is restored by: the Service's own, or a
    /// minimal one when its annotations cannot be read, so it keeps its
    /// addresses either way.
    pub fn request(&self, svc: &ServiceRecord) -> Arc<Request> {
        match svc.request() {
            Some(Ok(req)) => req.clone(),
            _ => Arc::new(minimal(svc, &self.ips)),
        }
    }
}

/// Addresses in the Service's `status.loadBalancer.ingress`.
pub fn ingress_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref())
        .filter_map(|ip| ip.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests;
