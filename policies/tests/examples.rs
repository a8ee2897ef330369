//! The ready-made policies in `policies/examples/`: each is read as the
//! LoadBalancerPolicy a platform team would apply, compiled, and checked
//! against claims it must allow and claims it must refuse.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use barelb_api::LoadBalancerPolicy;
use barelb_policies::{
    Engine, Inputs, NamespaceInput, PolicySource, PoolInput, RequestInput, ServiceInput, Verdict,
};

fn load(name: &str) -> LoadBalancerPolicy {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A claim: namespace labels/annotations, pool labels, explicit IPs, sharing key.
#[derive(Default)]
struct Case<'a> {
    ns: &'a str,
    ns_labels: &'a [(&'a str, &'a str)],
    ns_annotations: &'a [(&'a str, &'a str)],
    pool_labels: &'a [(&'a str, &'a str)],
    ips: &'a [&'a str],
    sharing_key: &'a str,
}

impl Case<'_> {
    fn inputs(&self) -> Inputs {
        Inputs {
            namespace: NamespaceInput {
                name: self.ns.into(),
                labels: map(self.ns_labels),
                annotations: map(self.ns_annotations),
            },
            service: ServiceInput {
                name: "web".into(),
                namespace: self.ns.into(),
                sharing_key: self.sharing_key.into(),
                ip_families: vec!["IPv4".into()],
                external_traffic_policy: "Cluster".into(),
                ..Default::default()
            },
            pool: PoolInput {
                name: "pool-a".into(),
                labels: map(self.pool_labels),
                addresses: vec!["10.0.30.0/24".into()],
            },
            request: RequestInput {
                pool: String::new(),
                ips: self.ips.iter().map(|s| s.to_string()).collect(),
                automatic: self.ips.is_empty(),
            },
        }
    }
}

/// Evaluates `case` under the example `name`, honouring its poolSelector.
fn verdict(engine: &Engine, name: &str, case: &Case<'_>) -> Verdict {
    let policy = load(name);
    let selector = policy.spec.pool_selector.clone().unwrap_or_default();
    if !selector.matches(&map(case.pool_labels)) {
        return Verdict::Allow;
    }
    let compiled = engine
        .compile(&PolicySource::from_resource(&policy))
        .unwrap();
    engine.evaluate(&compiled, &case.inputs())
}

fn refused(v: &Verdict) -> &str {
    match v {
        Verdict::Refuse { message, .. } => message,
        Verdict::Allow => panic!("expected a refusal"),
    }
}

#[test]
fn team_match() {
    let e = Engine::default();
    let pool = &[("team", "payments")];
    let ok = Case {
        ns: "pay",
        ns_labels: &[("team", "payments")],
        pool_labels: pool,
        ..Default::default()
    };
    assert_eq!(verdict(&e, "team-match", &ok), Verdict::Allow);
    let other = Case {
        ns_labels: &[("team", "search")],
        ..ok
    };
    let v = verdict(&e, "team-match", &other);
    assert_eq!(
        refused(&v),
        "pool pool-a belongs to team payments; label the namespace team=payments or use your team's pool"
    );
    let unlabelled = Case {
        ns_labels: &[],
        ..other
    };
    refused(&verdict(&e, "team-match", &unlabelled));
    // A pool without a team label is not selected.
    let open = Case {
        pool_labels: &[],
        ..unlabelled
    };
    assert_eq!(verdict(&e, "team-match", &open), Verdict::Allow);
}

#[test]
fn prod_only() {
    let e = Engine::default();
    let prod_pool = &[("env", "prod")];
    let ok = Case {
        ns: "shop",
        ns_labels: &[("env", "prod")],
        pool_labels: prod_pool,
        ..Default::default()
    };
    assert_eq!(verdict(&e, "prod-only", &ok), Verdict::Allow);
    let dev = Case {
        ns_labels: &[("env", "dev")],
        ..ok
    };
    assert!(refused(&verdict(&e, "prod-only", &dev)).contains("env=prod"));
    let none = Case {
        ns_labels: &[],
        ..dev
    };
    refused(&verdict(&e, "prod-only", &none));
    let dev_pool = Case {
        pool_labels: &[("env", "dev")],
        ..none
    };
    assert_eq!(verdict(&e, "prod-only", &dev_pool), Verdict::Allow);
}

#[test]
fn namespace_subranges() {
    let e = Engine::default();
    let carved = &[("barelb.io/carved", "true")];
    let range = &[("barelb.io/allowed-range", "10.0.30.16/28")];
    let inside = Case {
        ns: "team-b",
        ns_annotations: range,
        pool_labels: carved,
        ips: &["10.0.30.20"],
        ..Default::default()
    };
    assert_eq!(verdict(&e, "namespace-subranges", &inside), Verdict::Allow);
    let outside = Case {
        ips: &["10.0.30.40"],
        ..inside
    };
    assert_eq!(
        refused(&verdict(&e, "namespace-subranges", &outside)),
        "namespace team-b may only use addresses in 10.0.30.16/28; pick one from that range"
    );
    let automatic = Case {
        ips: &[],
        ..outside
    };
    assert!(refused(&verdict(&e, "namespace-subranges", &automatic)).contains("barelb.io/ips"));
    let no_range = Case {
        ns_annotations: &[],
        ips: &["10.0.30.20"],
        ..automatic
    };
    assert!(
        refused(&verdict(&e, "namespace-subranges", &no_range)).contains("annotate your namespace")
    );
}

#[test]
fn no_cross_namespace_sharing() {
    let e = Engine::default();
    let ok = Case {
        ns: "team-a",
        sharing_key: "team-a/web",
        ..Default::default()
    };
    assert_eq!(
        verdict(&e, "no-cross-namespace-sharing", &ok),
        Verdict::Allow
    );
    let unshared = Case {
        sharing_key: "",
        ..ok
    };
    assert_eq!(
        verdict(&e, "no-cross-namespace-sharing", &unshared),
        Verdict::Allow
    );
    let foreign = Case {
        sharing_key: "team-b/web",
        ..unshared
    };
    assert!(
        refused(&verdict(&e, "no-cross-namespace-sharing", &foreign))
            .contains("must start with team-a/")
    );
    // A key that merely starts with the namespace's name is not enough.
    let prefix = Case {
        sharing_key: "team-ab/web",
        ..foreign
    };
    refused(&verdict(&e, "no-cross-namespace-sharing", &prefix));
}

#[test]
fn bgp_platform_only() {
    let e = Engine::default();
    let bgp = &[("barelb.io/announce", "bgp")];
    let ok = Case {
        ns: "ingress",
        ns_labels: &[("barelb.io/tier", "platform")],
        pool_labels: bgp,
        ..Default::default()
    };
    assert_eq!(verdict(&e, "bgp-platform-only", &ok), Verdict::Allow);
    let app = Case {
        ns: "shop",
        ns_labels: &[("barelb.io/tier", "app")],
        ..ok
    };
    assert!(refused(&verdict(&e, "bgp-platform-only", &app)).contains("use an L2 pool"));
    let l2 = Case {
        pool_labels: &[("barelb.io/announce", "l2")],
        ..app
    };
    assert_eq!(verdict(&e, "bgp-platform-only", &l2), Verdict::Allow);
}

#[test]
fn every_example_is_tested() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "yaml").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bgp-platform-only",
            "namespace-subranges",
            "no-cross-namespace-sharing",
            "prod-only",
            "team-match"
        ]
    );
}
