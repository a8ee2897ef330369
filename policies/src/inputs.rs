//! The variables a rule sees. Field names follow docs/operator.md (Policies) and the
//! design: a Kubernetes user's policy reads the same here.

use std::collections::BTreeMap;

use serde::Serialize;

/// `namespace`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NamespaceInput {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// One entry of `service.ports`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PortInput {
    pub name: String,
    pub port: i64,
    pub protocol: String,
}

/// `service`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInput {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub ports: Vec<PortInput>,
    pub external_traffic_policy: String,
    pub ip_families: Vec<String>,
    pub load_balancer_class: String,
    pub sharing_key: String,
}

/// `pool`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolInput {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub addresses: Vec<String>,
}

/// `request`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestInput {
    /// The pool asked for (empty when none was named).
    pub pool: String,
    /// Addresses asked for explicitly.
    pub ips: Vec<String>,
    /// True when the Service named neither a pool nor addresses.
    pub automatic: bool,
}

/// Everything one evaluation sees.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Inputs {
    pub namespace: NamespaceInput,
    pub service: ServiceInput,
    pub pool: PoolInput,
    pub request: RequestInput,
}

impl Inputs {
    /// Rough size in bytes (labels, annotations, addresses), to bound work.
    pub fn size(&self) -> usize {
        let map =
            |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        map(&self.namespace.labels)
            + map(&self.namespace.annotations)
            + map(&self.service.labels)
            + map(&self.service.annotations)
            + map(&self.pool.labels)
            + self.pool.addresses.iter().map(String::len).sum::<usize>()
            + self.request.ips.iter().map(String::len).sum::<usize>()
            + self.service.ports.len() * 16
    }
}
