//! The cleanup finalizer ([`CLEANUP_FINALIZER`]): present on every Service
//! barelb serves, taken off once barelb has released it — when the Service
//! is being deleted, or stops being a LoadBalancer of barelb's class.

use super::{ClassPolicy, ServiceRecord, of_class, qualifies};

/// What a Service's cleanup finalizer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Nothing: present where it should be, absent where it should not, or
    /// not barelb's to touch.
    Keep,
    /// barelb serves the Service and the finalizer is missing.
    Add,
    /// barelb no longer serves the Service it had the finalizer on.
    Remove,
}

/// The finalizer step for `svc`. `served`: this instance wrote the
/// Service's status (its field manager owns it) — the only sign left of
/// a Service that was barelb's once its type changed, since the apiserver
/// drops `loadBalancerClass` with the type. Another load balancer's
/// finalizer (a Service of another class, never served here) is left alone.
pub fn finalizer_step(svc: &ServiceRecord, class: &ClassPolicy, served: bool) -> FinalizerStep {
    let has = svc.cleanup_finalizer;
    if qualifies(svc, class) {
        return if has {
            FinalizerStep::Keep
        } else {
            FinalizerStep::Add
        };
    }
    if has && (served || (svc.deleting && of_class(svc, class))) {
        FinalizerStep::Remove
    } else {
        FinalizerStep::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::CLEANUP_FINALIZER;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn svc(type_: &str, class: Option<&str>, finalizer: bool, deleting: bool) -> ServiceRecord {
        let mut s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": type_, "loadBalancerClass": class},
        }))
        .unwrap();
        if finalizer {
            s.metadata.finalizers = Some(vec!["other.io/keep".into(), CLEANUP_FINALIZER.into()]);
        }
        if deleting {
            s.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        ServiceRecord::of(&s)
    }

    fn classless() -> ClassPolicy {
        ClassPolicy::default()
    }

    #[test]
    fn a_served_service_gets_it_once() {
        let c = classless();
        assert_eq!(
            finalizer_step(&svc("LoadBalancer", None, false, false), &c, false),
            FinalizerStep::Add
        );
        assert_eq!(
            finalizer_step(&svc("LoadBalancer", None, true, false), &c, true),
            FinalizerStep::Keep
        );
    }

    #[test]
    fn deletion_or_a_type_change_takes_it_off() {
        let c = classless();
        let deleting = svc("LoadBalancer", None, true, true);
        assert_eq!(finalizer_step(&deleting, &c, false), FinalizerStep::Remove);
        let cluster_ip = svc("ClusterIP", None, true, false);
        assert_eq!(finalizer_step(&cluster_ip, &c, true), FinalizerStep::Remove);
        assert_eq!(
            finalizer_step(&svc("ClusterIP", None, false, false), &c, true),
            FinalizerStep::Keep
        );
    }

    #[test]
    fn another_load_balancers_finalizer_is_left_alone() {
        let c = classless();
        let theirs = svc("LoadBalancer", Some("cloud.example/lb"), true, false);
        assert_eq!(finalizer_step(&theirs, &c, false), FinalizerStep::Keep);
        let theirs_deleting = svc("LoadBalancer", Some("cloud.example/lb"), true, true);
        assert_eq!(
            finalizer_step(&theirs_deleting, &c, false),
            FinalizerStep::Keep
        );
        // Never served here and not of our class: a ClusterIP Service
        // another controller put it on keeps it.
        assert_eq!(
            finalizer_step(&svc("ClusterIP", None, true, false), &c, false),
            FinalizerStep::Keep
        );
        // Class-less Services belong to someone else when barelb is strict.
        let strict = ClassPolicy {
            handle_classless: false,
            ..ClassPolicy::default()
        };
        let classless_deleting = svc("LoadBalancer", None, true, true);
        assert_eq!(
            finalizer_step(&classless_deleting, &strict, false),
            FinalizerStep::Keep
        );
    }
}
