use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::*;

fn svc(spec: serde_json::Value, annotations: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "team-a", "annotations": annotations,
                      "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .unwrap()
}

fn serves(svc: &Service, class: &ClassPolicy) -> bool {
    qualifies(&ServiceRecord::of(svc), class)
}

#[test]
fn class_handling() {
    let classless = ClassPolicy::default();
    let strict = ClassPolicy {
        handle_classless: false,
        ..ClassPolicy::default()
    };
    let lb = svc(json!({"type": "LoadBalancer"}), json!({}));
    assert!(serves(&lb, &classless));
    assert!(!serves(&lb, &strict));
    let ours = svc(
        json!({"type": "LoadBalancer", "loadBalancerClass": "barelb.io/lb"}),
        json!({}),
    );
    assert!(serves(&ours, &strict));
    let theirs = svc(
        json!({"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}),
        json!({}),
    );
    assert!(!serves(&theirs, &classless));
    let custom = ClassPolicy {
        class: "other.io/lb".into(),
        handle_classless: false,
    };
    assert!(serves(&theirs, &custom));
    assert!(!serves(&ours, &custom));
    assert!(!serves(
        &svc(json!({"type": "ClusterIP"}), json!({})),
        &classless
    ));
}

#[test]
fn reads_families_ips_pool_and_key() {
    let s = svc(
        json!({"type": "LoadBalancer", "ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "PreferDualStack",
               "ports": [{"port": 53, "protocol": "UDP"}], "externalTrafficPolicy": "Local"}),
        json!({"barelb.io/ips": "10.0.0.5, 2001:db8::5", "barelb.io/pool": "edge", "barelb.io/sharing-key": "dns"}),
    );
    let r = parse(&s).unwrap();
    assert_eq!(r.families, [Family::V6, Family::V4]);
    assert!(!r.require_all_families);
    assert_eq!(r.ips.len(), 2);
    assert_eq!(r.pool.as_deref(), Some("edge"));
    assert_eq!(r.sharing_key.as_deref(), Some("dns"));
    assert_eq!(
        r.ports,
        [PortKey {
            protocol: "UDP".into(),
            port: 53
        }]
    );
    assert_eq!(r.external_traffic_policy, "Local");
}

#[test]
fn single_stack_defaults_and_load_balancer_ip() {
    let r = parse(&svc(
        json!({"type": "LoadBalancer", "loadBalancerIP": "10.0.0.9"}),
        json!({}),
    ))
    .unwrap();
    assert_eq!(r.families, [Family::V4]);
    assert!(r.require_all_families);
    assert_eq!(r.ips, ["10.0.0.9".parse::<IpAddr>().unwrap()]);
}

#[test]
fn malformed_requests_name_the_annotation() {
    let cases = [
        (json!({"barelb.io/ips": "not-an-ip"}), "not an IP address"),
        (
            json!({"barelb.io/ips": "10.0.0.1,10.0.0.2"}),
            "two IPv4 addresses",
        ),
        (
            json!({"barelb.io/ips": "2001:db8::1"}),
            "ipFamilies are IPv4",
        ),
        (
            json!({"barelb.io/pool": ""}),
            "annotation barelb.io/pool is empty",
        ),
    ];
    for (ann, words) in cases {
        let err = parse(&svc(
            json!({"type": "LoadBalancer", "ipFamilies": ["IPv4"]}),
            ann.clone(),
        ))
        .unwrap_err();
        assert!(err.0.contains(words), "{ann}: {err}");
        assert!(!err.0.contains('\n'));
    }
    let err = parse(&svc(
        json!({"type": "LoadBalancer", "loadBalancerIP": "10.0.0.1"}),
        json!({"barelb.io/ips": "10.0.0.2"}),
    ))
    .unwrap_err();
    assert!(err.0.contains("disagrees"), "{err}");
}

#[test]
fn kubectls_last_applied_copy_is_not_part_of_the_request() {
    let r = parse(&svc(
        json!({"type": "LoadBalancer"}),
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}),
    ))
    .unwrap();
    assert_eq!(r.annotations.keys().collect::<Vec<_>>(), ["team"]);
}
