//! The rules for Services sharing one address: same sharing key, same
//! namespace unless the pool allows cross-namespace sharing, no port used by
//! both, and the same externalTrafficPolicy.

use std::net::IpAddr;

use k8s_openapi::jiff::Timestamp;

use crate::request::{PortKey, Request};

/// What the sharing rules need to know about a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharingMeta {
    pub sharing_key: Option<String>,
    pub namespace: String,
    pub ports: Vec<PortKey>,
    pub external_traffic_policy: String,
    /// Addresses the Service asked for by name.
    pub explicit: Vec<IpAddr>,
    pub created: Option<Timestamp>,
}

impl SharingMeta {
    pub fn of(req: &Request) -> Self {
        SharingMeta {
            sharing_key: req.sharing_key.clone(),
            namespace: req.key.namespace.clone(),
            ports: req.ports.clone(),
            external_traffic_policy: req.external_traffic_policy.clone(),
            explicit: req.ips.clone(),
            created: req.created,
        }
    }
}

/// Whether `a` may share an address with `b`; if not, why (one phrase).
pub fn compatible(a: &SharingMeta, b: &SharingMeta, cross_namespace: bool) -> Result<(), String> {
    match (&a.sharing_key, &b.sharing_key) {
        (Some(x), Some(y)) if x == y => {}
        (_, None) | (None, _) => return Err("no shared barelb.io/sharing-key".into()),
        (Some(_), Some(y)) => return Err(format!("it uses sharing key {y:?}")),
    }
    if a.namespace != b.namespace && !cross_namespace {
        return Err(format!(
            "it is in namespace {} and the pool does not set allowCrossNamespaceSharing",
            b.namespace
        ));
    }
    if let Some(p) = a.ports.iter().find(|p| b.ports.contains(p)) {
        return Err(format!("both use port {}/{}", p.port, p.protocol));
    }
    if a.external_traffic_policy != b.external_traffic_policy {
        return Err(format!(
            "externalTrafficPolicy {} differs from {}",
            a.external_traffic_policy, b.external_traffic_policy
        ));
    }
    Ok(())
}
