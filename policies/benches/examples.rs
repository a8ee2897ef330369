//! ns per evaluation for each example policy (an allowed claim, so every
//! rule runs), next to a rule that is just `true` — the engine's fixed cost
//! (handing the evaluation to a worker thread and back, building the
//! variables). Run: `cargo bench -p barelb-policies --bench examples`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use barelb_api::LoadBalancerPolicy;
use barelb_policies::{
    Action, Engine, Inputs, NamespaceInput, PolicySource, PoolInput, RequestInput, RuleSource,
    ServiceInput, Verdict,
};

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn inputs(
    ns: &[(&str, &str)],
    ns_ann: &[(&str, &str)],
    pool: &[(&str, &str)],
    ips: &[&str],
    key: &str,
) -> Inputs {
    Inputs {
        namespace: NamespaceInput {
            name: "team-a".into(),
            labels: map(ns),
            annotations: map(ns_ann),
        },
        service: ServiceInput {
            name: "web".into(),
            namespace: "team-a".into(),
            sharing_key: key.into(),
            ..Default::default()
        },
        pool: PoolInput {
            name: "pool-a".into(),
            labels: map(pool),
            addresses: vec!["10.0.30.0/24".into()],
        },
        request: RequestInput {
            pool: String::new(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            automatic: ips.is_empty(),
        },
    }
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let engine = Engine::default();
    let cases: Vec<(&str, Inputs)> = vec![
        (
            "team-match",
            inputs(&[("team", "web")], &[], &[("team", "web")], &[], ""),
        ),
        (
            "prod-only",
            inputs(&[("env", "prod")], &[], &[("env", "prod")], &[], ""),
        ),
        (
            "namespace-subranges",
            inputs(
                &[],
                &[("barelb.io/allowed-range", "10.0.30.16/28")],
                &[],
                &["10.0.30.20"],
                "",
            ),
        ),
        (
            "no-cross-namespace-sharing",
            inputs(&[], &[], &[], &[], "team-a/web"),
        ),
        (
            "bgp-platform-only",
            inputs(
                &[("barelb.io/tier", "platform")],
                &[],
                &[("barelb.io/announce", "bgp")],
                &[],
                "",
            ),
        ),
    ];
    let trivial = PolicySource {
        name: "trivial".into(),
        generation: 1,
        action: Action::Deny,
        rules: vec![RuleSource {
            name: "t".into(),
            expression: "true".into(),
            ..Default::default()
        }],
    };
    let mut all: Vec<(String, PolicySource, Inputs)> = vec![(
        "(rule `true`: fixed cost)".into(),
        trivial,
        inputs(&[], &[], &[], &[], ""),
    )];
    for (name, inp) in cases {
        let text = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
        let p: LoadBalancerPolicy = serde_yaml::from_str(&text).unwrap();
        all.push((name.to_string(), PolicySource::from_resource(&p), inp));
    }
    // A smoke run (scripts/test) checks the benchmark works, in a debug build.
    let smoke = std::env::var_os("BARELB_BENCH_SMOKE").is_some_and(|v| v == "1");
    let (warm, n) = if smoke {
        (20, 200u32)
    } else {
        (2_000, 20_000u32)
    };
    for (name, src, inp) in &all {
        let compiled = engine.compile(src).unwrap();
        for _ in 0..warm {
            assert_eq!(engine.evaluate(&compiled, inp), Verdict::Allow, "{name}");
        }
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(engine.evaluate(&compiled, inp));
        }
        let per = t.elapsed().as_nanos() / u128::from(n);
        println!(
            "{name:<30} {} rule(s)  {per:>7} ns/evaluation",
            src.rules.len()
        );
    }
}
