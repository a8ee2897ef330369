//! [`ServiceRecord`]: what barelb keeps of a Service in place of the whole
//! object. The operator's index holds one per Service of the cluster; at
//! 10,000 Services the k8s-openapi object (selector, cluster IPs, port
//! details, a BTreeMap node per map, ownership records) cost ~5 KiB each in
//! memory, the record a fraction of that. Its request is parsed once, when
//! the Service changes, and shared (`Arc`) by every reader.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::{InvalidRequest, Request, ServiceKey, ingress_ips, parse};
use crate::names::{CLEANUP_FINALIZER, conditions};

/// One Service as barelb reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRecord {
    pub key: ServiceKey,
    /// For events about the Service.
    pub uid: Option<String>,
    /// etcd's revision (0 when absent or not a number).
    pub resource_version: u64,
    pub generation: Option<i64>,
    pub created: Option<Timestamp>,
    /// Its deletion has begun.
    pub deleting: bool,
    /// It carries barelb's cleanup finalizer.
    pub cleanup_finalizer: bool,
    /// Field managers that wrote its status subresource.
    pub status_managers: Vec<String>,
    /// `Some` for a Service of type LoadBalancer.
    pub load_balancer: Option<LoadBalancer>,
    /// `status.loadBalancer.ingress` addresses.
    pub ingress: Vec<IpAddr>,
    /// barelb's own status conditions (Allocated, Announced); no other is
    /// read.
    pub conditions: Vec<Condition>,
}

/// What a LoadBalancer Service asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadBalancer {
    /// `spec.loadBalancerClass`.
    pub class: Option<String>,
    /// The request ([`parse`]), or why it cannot be read.
    pub request: Result<Arc<Request>, InvalidRequest>,
    /// `externalTrafficPolicy: Local`, read apart from the request: planning
    /// needs it also for a Service whose annotations cannot be read.
    pub local_traffic: bool,
}

impl ServiceRecord {
    /// The record of `svc`.
    pub fn of(svc: &Service) -> Self {
        let meta = &svc.metadata;
        let spec = svc.spec.as_ref();
        let load_balancer = spec
            .filter(|s| s.type_.as_deref() == Some("LoadBalancer"))
            .map(|s| LoadBalancer {
                class: s.load_balancer_class.clone(),
                request: parse(svc).map(Arc::new),
                local_traffic: s.external_traffic_policy.as_deref() == Some("Local"),
            });
        let status_managers = meta
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.subresource.as_deref() == Some("status"))
            .filter_map(|m| m.manager.clone())
            .collect();
        let conditions = svc
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.type_ == conditions::ALLOCATED || c.type_ == conditions::ANNOUNCED)
            .cloned()
            .collect();
        ServiceRecord {
            key: ServiceKey::of(svc),
            uid: meta.uid.clone(),
            resource_version: meta
                .resource_version
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            generation: meta.generation,
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
            cleanup_finalizer: meta
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == CLEANUP_FINALIZER),
            status_managers,
            load_balancer,
            ingress: ingress_ips(svc),
            conditions,
        }
    }

    /// Its request, if it is a LoadBalancer.
    pub fn request(&self) -> Option<&Result<Arc<Request>, InvalidRequest>> {
        self.load_balancer.as_ref().map(|lb| &lb.request)
    }

    /// Its condition of `type_` (one of `names::conditions`).
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether `manager` wrote its status.
    pub fn status_managed_by(&self, manager: &str) -> bool {
        self.status_managers.iter().any(|m| m == manager)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_barelb_reads_and_drops_the_rest() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": ["other.io/x", CLEANUP_FINALIZER],
                "labels": {"app": "web"},
                "managedFields": [
                    {"manager": "barelb-operator", "operation": "Apply", "subresource": "status"},
                    {"manager": "kubectl", "operation": "Update"},
                ],
            },
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "barelb.io/lb",
                     "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {
                "loadBalancer": {"ingress": [{"ip": "10.0.0.1"}, {"hostname": "x"}]},
                "conditions": [
                    {"type": conditions::ALLOCATED, "status": "True", "reason": "Allocated",
                     "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "other.io/Ready", "status": "True", "reason": "R",
                     "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                ],
            },
        }))
        .unwrap();
        let r = ServiceRecord::of(&svc);
        assert_eq!(r.key.to_string(), "shop/web");
        assert_eq!((r.resource_version, r.generation), (42, Some(3)));
        assert!(r.cleanup_finalizer && !r.deleting);
        assert!(r.status_managed_by("barelb-operator"));
        assert!(!r.status_managed_by("kubectl"));
        assert_eq!(r.ingress, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.conditions.len(), 1);
        assert!(r.condition(conditions::ALLOCATED).is_some());
        let lb = r.load_balancer.as_ref().unwrap();
        assert_eq!(lb.class.as_deref(), Some("barelb.io/lb"));
        assert!(lb.local_traffic);
        let req = r.request().unwrap().as_ref().unwrap();
        assert_eq!(req.labels.get("app").map(String::as_str), Some("web"));
    }

    #[test]
    fn a_service_of_another_type_has_no_request() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"type": "ClusterIP"},
        }))
        .unwrap();
        let r = ServiceRecord::of(&svc);
        assert!(r.request().is_none());
        assert_eq!(r.resource_version, 0);
    }
}
