//! The CEL policy engine on arbitrary rules (`policy` fuzzes the inputs of
//! the shipped policies; this, the rules themselves): compiling any text
//! as a LoadBalancerPolicy rule (and message expression) and evaluating it
//! against any namespace, Service, pool and request must never panic, hang
//! or overflow the stack; the engine's bounds (length, nesting,
//! comprehension depth, time) must hold.
//!
//! Input: `expression \0 message-expression \0 key \0 value \0 key ...`;
//! the keys and values become labels, annotations, addresses and names.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use barelb_policies::{Action, Engine, Inputs, Limits, PolicySource, PortInput, RuleSource};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(Limits::default()))
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0).map(String::from_utf8_lossy);
    let expression = parts.next().unwrap_or_default().into_owned();
    let message = parts.next().map(|m| m.into_owned()).filter(|m| !m.is_empty());
    let mut inputs = Inputs::default();
    let mut i = 0;
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match i % 6 {
            0 => drop(inputs.namespace.labels.insert(k, v)),
            1 => drop(inputs.service.annotations.insert(k, v)),
            2 => drop(inputs.pool.labels.insert(k, v)),
            3 => {
                inputs.pool.addresses.push(k);
                inputs.request.ips.push(v);
            }
            4 => inputs.service.ports.push(PortInput { name: k, port: v.len() as i64, protocol: v }),
            _ => {
                inputs.namespace.name = k;
                inputs.request.pool = v;
            }
        }
        i += 1;
    }
    inputs.request.automatic = inputs.request.ips.is_empty();
    // A new generation each time: nothing is served from the compile cache.
    static GENERATION: AtomicI64 = AtomicI64::new(0);
    let src = PolicySource {
        name: "fuzz".into(),
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        action: Action::Deny,
        rules: vec![RuleSource {
            name: "rule".into(),
            expression,
            message: None,
            message_expression: message,
        }],
    };
    if let Ok(policy) = engine().compile(&src) {
        let _ = engine().evaluate(&policy, &inputs);
    }
    engine().forget("fuzz");
});
