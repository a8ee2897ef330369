//! The inputs CEL policies read, on arbitrary bytes: every policy shipped
//! in policies/examples evaluated against any namespace, Service, pool and
//! request (labels, annotations, names, addresses, ports — all of it
//! written by users) must never panic or overflow, and must give the same
//! verdict twice.
//!
//! Input: `key \0 value \0 key \0 value ...`, spread over the claim's fields.
#![no_main]

use std::sync::{Arc, OnceLock};

use barelb_api::LoadBalancerPolicy;
use barelb_policies::{
    CompiledPolicy, Engine, Inputs, Limits, PolicySource, PortInput, Variables,
};
use libfuzzer_sys::fuzz_target;

const EXAMPLES: [&str; 5] = [
    include_str!("../../policies/examples/bgp-platform-only.yaml"),
    include_str!("../../policies/examples/namespace-subranges.yaml"),
    include_str!("../../policies/examples/no-cross-namespace-sharing.yaml"),
    include_str!("../../policies/examples/prod-only.yaml"),
    include_str!("../../policies/examples/team-match.yaml"),
];

fn compiled() -> &'static (Engine, Vec<Arc<CompiledPolicy>>) {
    static POLICIES: OnceLock<(Engine, Vec<Arc<CompiledPolicy>>)> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let engine = Engine::new(Limits::default());
        let policies = EXAMPLES
            .iter()
            .map(|text| {
                let p: LoadBalancerPolicy = serde_yaml::from_str(text).expect("example policy");
                engine.compile(&PolicySource::from_resource(&p)).expect("example compiles")
            })
            .collect();
        (engine, policies)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0).map(String::from_utf8_lossy);
    let mut inputs = Inputs::default();
    let mut i = 0;
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match i % 8 {
            0 => drop(inputs.namespace.labels.insert(k, v)),
            1 => drop(inputs.namespace.annotations.insert(k, v)),
            2 => drop(inputs.service.labels.insert(k, v)),
            3 => drop(inputs.pool.labels.insert(k, v)),
            4 => {
                inputs.pool.addresses.push(k);
                inputs.request.ips.push(v);
            }
            5 => inputs.service.ports.push(PortInput { port: v.len() as i64 - 2, name: k, protocol: v }),
            6 => {
                inputs.namespace.name = k.clone();
                inputs.service.namespace = k;
                inputs.service.sharing_key = v;
            }
            _ => {
                inputs.pool.name = k;
                inputs.request.pool = v;
            }
        }
        i += 1;
    }
    inputs.request.automatic = inputs.request.ips.is_empty() && inputs.request.pool.is_empty();
    let (engine, policies) = compiled();
    // Once per claim, as the operator does; the second verdict converts anew.
    let variables = Variables::new(&inputs);
    for p in policies {
        let first = engine.judge(p, &variables);
        assert_eq!(first, engine.evaluate(p, &inputs), "{}", p.name);
    }
});
