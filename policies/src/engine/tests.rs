use std::collections::BTreeMap;

use super::*;
use crate::inputs::{NamespaceInput, PoolInput, RequestInput, ServiceInput};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn inputs(ns_labels: &[(&str, &str)], pool_labels: &[(&str, &str)]) -> Inputs {
    Inputs {
        namespace: NamespaceInput {
            name: "team-a".into(),
            labels: labels(ns_labels),
            annotations: BTreeMap::new(),
        },
        service: ServiceInput {
            name: "web".into(),
            namespace: "team-a".into(),
            ..Default::default()
        },
        pool: PoolInput {
            name: "shared".into(),
            labels: labels(pool_labels),
            addresses: vec!["10.0.10.0/24".into()],
        },
        request: RequestInput {
            pool: String::new(),
            ips: vec!["10.0.10.7".into()],
            automatic: false,
        },
    }
}

fn policy(rules: &[(&str, &str)]) -> PolicySource {
    PolicySource {
        name: "p".into(),
        generation: 1,
        action: Action::Deny,
        rules: rules
            .iter()
            .map(|(n, e)| RuleSource {
                name: n.to_string(),
                expression: e.to_string(),
                ..Default::default()
            })
            .collect(),
    }
}

#[test]
fn team_labels_must_match() {
    let engine = Engine::default();
    let mut src = policy(&[(
        "team-matches",
        "namespace.labels['team'] == pool.labels['team']",
    )]);
    src.rules[0].message = Some("namespace team must match pool team".into());
    let p = engine.compile(&src).unwrap();
    assert_eq!(
        engine.evaluate(&p, &inputs(&[("team", "web")], &[("team", "web")])),
        Verdict::Allow
    );
    let v = engine.evaluate(&p, &inputs(&[("team", "db")], &[("team", "web")]));
    assert_eq!(
        v,
        Verdict::Refuse {
            action: Action::Deny,
            policy: "p".into(),
            rule: "team-matches".into(),
            message: "namespace team must match pool team".into()
        }
    );
}

#[test]
fn kubernetes_cidr_and_ip_functions_work() {
    let engine = Engine::default();
    let p = engine
        .compile(&policy(&[("in-range", "request.ips.all(ip, cidr('10.0.10.0/28').containsIP(ip)) && ip(request.ips[0]).family() == 4")]))
        .unwrap();
    assert_eq!(engine.evaluate(&p, &inputs(&[], &[])), Verdict::Allow);
}

#[test]
fn compile_errors_name_policy_rule_and_position() {
    let engine = Engine::default();
    let err = engine
        .compile(&policy(&[("ok", "true"), ("broken", "namespace.name ==")]))
        .unwrap_err();
    assert_eq!((err.policy.as_str(), err.rule.as_str()), ("p", "broken"));
    assert!(err.message.contains("1:"), "position in {err}");
    assert!(!err.to_string().contains('\n'));
}

/// The interpreter reports one error per bad token, each repeating the
/// whole line: 24 MB for a 4-KB rule of `+` (found by the `cel` fuzz target
/// as growing memory). The message is the first error, bounded.
#[test]
fn a_rule_with_thousands_of_errors_gets_a_short_message() {
    let engine = Engine::default();
    let rule = "+".repeat(4_000);
    let err = engine.compile(&policy(&[("plus", &rule)])).unwrap_err();
    assert!(
        err.message.len() <= text::MAX_MESSAGE + 3,
        "{}",
        err.message.len()
    );
    assert!(
        err.message.starts_with("1:1: Syntax error"),
        "{}",
        err.message
    );
    assert!(err.message.contains("(at \"⟨here⟩++++"), "{}", err.message);
    // A runtime error printing a large value is bounded too.
    let p = engine
        .compile(&policy(&[("big", "namespace.labels")]))
        .unwrap();
    let big = inputs(&[("k", &"v".repeat(100_000))], &[]);
    let Verdict::Refuse { message, .. } = engine.evaluate(&p, &big) else {
        panic!()
    };
    assert!(message.len() <= text::MAX_MESSAGE + 3, "{}", message.len());
    assert!(message.starts_with("expression returned"), "{message}");
}

/// The interpreter panics on message construction (found by the `cel` fuzz
/// target: `x{\n}`); such rules are refused when they compile.
#[test]
fn message_construction_is_refused_at_compile_time() {
    let engine = Engine::default();
    for expr in [
        "x{\n}",
        "google.protobuf.Int64Value{value: 1} == 1",
        "[1, T{}].size() == 2",
        "namespace.labels.all(k, k == Foo{}.x)",
        "f({'a': Y{a: 1}})",
    ] {
        let err = engine.compile(&policy(&[("r", expr)])).unwrap_err();
        assert!(err.message.contains("not supported"), "{expr}: {err}");
    }
    assert!(
        engine
            .compile(&policy(&[("map", "{'a': 1}.a == 1")]))
            .is_ok()
    );
}

#[test]
fn message_expression_and_warn_action() {
    let engine = Engine::default();
    let mut src = policy(&[("prod-only", "namespace.labels['env'] == 'prod'")]);
    src.action = Action::Warn;
    src.rules[0].message_expression =
        Some("'namespace ' + namespace.name + ' is not env=prod'".into());
    let p = engine.compile(&src).unwrap();
    match engine.evaluate(&p, &inputs(&[("env", "dev")], &[])) {
        Verdict::Refuse {
            action: Action::Warn,
            message,
            ..
        } => assert_eq!(message, "namespace team-a is not env=prod"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_keys_and_non_bool_results_refuse_clearly() {
    let engine = Engine::default();
    let p = engine
        .compile(&policy(&[("missing", "namespace.labels.team == 'x'")]))
        .unwrap();
    let Verdict::Refuse { message, .. } = engine.evaluate(&p, &inputs(&[], &[])) else {
        panic!()
    };
    assert!(message.contains("evaluation error"), "{message}");
    let mut number = policy(&[("number", "1 + 1")]);
    number.generation = 2; // same name: a new generation replaces the cached one
    let p = engine.compile(&number).unwrap();
    let Verdict::Refuse { message, .. } = engine.evaluate(&p, &inputs(&[], &[])) else {
        panic!()
    };
    assert!(message.contains("not a bool"), "{message}");
}

#[test]
fn interpreter_panics_become_refusals() {
    // cel 0.13 panics on struct literals (see FACTS.md): contained.
    let engine = Engine::default();
    let verdict = match engine.compile(&policy(&[("struct", "Foo{a: 1} == Foo{a: 1}")])) {
        Ok(p) => engine.evaluate(&p, &inputs(&[], &[])),
        Err(e) => Verdict::Refuse {
            action: Action::Deny,
            policy: e.policy,
            rule: e.rule,
            message: e.message,
        },
    };
    assert!(matches!(verdict, Verdict::Refuse { .. }), "{verdict:?}");
}

#[test]
fn bounds_on_expression_and_input_size() {
    let engine = Engine::new(Limits {
        max_expression: 32,
        max_input: 64,
        max_time: Duration::from_millis(100),
        ..Limits::default()
    });
    let long = format!("{} == 'x'", "namespace.name + ".repeat(10));
    assert!(
        engine
            .compile(&policy(&[("long", &long)]))
            .unwrap_err()
            .message
            .contains("limit")
    );
    let p = engine.compile(&policy(&[("t", "true")])).unwrap();
    let big = inputs(&[("k", &"v".repeat(100))], &[]);
    assert!(matches!(engine.evaluate(&p, &big), Verdict::Refuse { .. }));
}

#[test]
fn compiles_once_per_generation() {
    let engine = Engine::default();
    let src = policy(&[("t", "true")]);
    let a = engine.compile(&src).unwrap();
    let b = engine.compile(&src).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let mut next = src.clone();
    next.generation = 2;
    assert!(!Arc::ptr_eq(&a, &engine.compile(&next).unwrap()));
}

#[test]
fn deep_nesting_and_nested_comprehensions_are_refused_at_compile() {
    let engine = Engine::default();
    // Unchecked, 60 nested parentheses overflow the parser's stack in a
    // debug build: an abort no catch_unwind can contain.
    let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
    let err = engine.compile(&policy(&[("deep", &deep)])).unwrap_err();
    assert!(
        err.message.contains("nested") && err.message.contains("1:25"),
        "{err}"
    );
    let l = "[0,1,2,3,4,5,6,7,8,9]";
    let huge = format!("{l}.all(a, {l}.all(b, {l}.all(c, {l}.all(d, a + b + c + d >= 0))))");
    let err = engine.compile(&policy(&[("huge", &huge)])).unwrap_err();
    assert!(
        err.message.contains("comprehensions nested 3 deep"),
        "{err}"
    );
}

#[test]
fn a_runaway_rule_is_abandoned_and_the_engine_keeps_serving() {
    let engine = Engine::new(Limits {
        max_time: Duration::from_millis(50),
        max_expression: 16 * 1024,
        ..Limits::default()
    });
    // Two nested comprehensions over a long literal list: allowed by shape,
    // stopped by time.
    let l = format!("[{}]", vec!["1"; 1500].join(","));
    let slow = format!("{l}.all(a, {l}.all(b, a + b > 0 && string(a) + string(b) != 'x'))");
    let p = engine.compile(&policy(&[("slow", &slow)])).unwrap();
    let Verdict::Refuse { message, .. } = engine.evaluate(&p, &inputs(&[], &[])) else {
        panic!("expected a refusal")
    };
    assert!(message.contains("longer than"), "{message}");
    let mut fine = policy(&[("t", "true")]);
    fine.name = "q".into();
    let ok = engine.compile(&fine).unwrap();
    assert_eq!(engine.evaluate(&ok, &inputs(&[], &[])), Verdict::Allow);
}

/// Ports are `int`, as in Kubernetes' CEL: `p.port - 500` is negative
/// (as a `uint` it would overflow, an evaluation error).
#[test]
fn ports_are_ints_as_in_kubernetes_cel() {
    let engine = Engine::default();
    let mut i = inputs(&[], &[]);
    i.service.ports = vec![crate::inputs::PortInput {
        name: "https".into(),
        port: 443,
        protocol: "TCP".into(),
    }];
    let compiled = engine
        .compile(&policy(&[
            ("signed", "service.ports.all(p, p.port - 500 < 0)"),
            (
                "low",
                "service.ports.all(p, p.port < 1024 && p.port == 443)",
            ),
        ]))
        .unwrap();
    assert_eq!(engine.evaluate(&compiled, &i), Verdict::Allow);
}
