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

fn refusal(engine: &Engine, rule: &str, inputs: &Inputs) -> String {
    // Named after the rule: the engine caches compiled policies by name.
    let mut src = policy(&[("r", rule)]);
    src.name = rule.to_string();
    let p = engine.compile(&src).unwrap();
    match engine.evaluate(&p, inputs) {
        Verdict::Refuse { message, .. } => message,
        Verdict::Allow => panic!("{rule}: allowed"),
    }
}

/// An engine whose time limit is out of reach (a debug build may need more
/// than 100 ms to spend the budget): only the budget can stop a rule.
fn stopped_by_cost_alone() -> Engine {
    Engine::new(Limits {
        max_time: Duration::from_secs(30),
        ..Limits::default()
    })
}

/// One call that would allocate gigabytes is refused before it runs: on
/// the caller's thread, where nothing else bounds it.
#[test]
fn calls_that_build_too_much_are_refused_before_they_run() {
    let engine = stopped_by_cost_alone();
    let mut i = inputs(&[], &[]);
    i.namespace.name = "x".repeat(4000);
    for rule in [
        "lists.range(4000000000).size() > 0",
        "namespace.name.replace('', namespace.name).size() > 0",
        "'%.4000000000f'.format([1.0]).size() > 0",
        "lists.range(4000).map(n, namespace.name).join(namespace.name).size() > 0",
        "namespace.name.split('').distinct().size() > 0",
        "sets.intersects(namespace.name.split(''), namespace.name.split(''))",
    ] {
        let message = refusal(&engine, rule, &i);
        assert!(message.contains("cost budget"), "{rule}: {message}");
    }
}

/// Errors a rule absorbs (`|| true`) do not turn a spent budget into an allow.
#[test]
fn a_spent_budget_refuses_even_when_the_rule_absorbs_the_error() {
    let engine = Engine::default();
    let message = refusal(
        &engine,
        "lists.range(2000000).size() > 0 || true",
        &inputs(&[], &[]),
    );
    assert!(message.contains("cost budget"), "{message}");
}

/// The rule that kept its abandoned worker allocating: a nested `map` over
/// 3,000 annotations. Refused by cost, and the engine has no runaway left.
#[test]
fn nested_loops_over_large_inputs_stop_at_the_budget() {
    let engine = stopped_by_cost_alone();
    let mut i = inputs(&[], &[]);
    i.service.annotations = (0..3000).map(|n| (format!("k{n}"), "v".into())).collect();
    let message = refusal(
        &engine,
        "service.annotations.map(k, service.annotations.map(j, k + j + service.annotations[j])).size() == 0",
        &i,
    );
    assert!(message.contains("cost budget"), "{message}");
    assert_eq!(engine.workers.runaway(), 0);
    // A loop over the same inputs passes. Reading the map inside it copies
    // the map each time (the interpreter's way): with 3,000 entries that is
    // past the budget, with 100 it is not.
    let keys = "service.annotations.all(k, k.size() < 64)";
    let values = "service.annotations.all(k, service.annotations[k].size() < 64)";
    for (rule, n, allowed) in [
        (keys, 3000, true),
        (values, 3000, false),
        (values, 100, true),
    ] {
        let mut src = policy(&[("r", rule)]);
        src.name = format!("{rule} {n}");
        let p = engine.compile(&src).unwrap();
        i.service.annotations = (0..n).map(|n| (format!("k{n}"), "v".into())).collect();
        let verdict = engine.evaluate(&p, &i);
        assert_eq!(
            verdict == Verdict::Allow,
            allowed,
            "{rule} over {n}: {verdict:?}"
        );
    }
}

/// A rule past its time limit stops at its next metered step instead of
/// running on, abandoned, on its worker.
#[test]
fn a_rule_past_its_time_stops_by_itself() {
    let engine = Engine::new(Limits {
        max_time: Duration::from_millis(30),
        max_expression: 16 * 1024,
        max_cost: u64::MAX,
        ..Limits::default()
    });
    let l = format!("[{}]", vec!["1"; 1500].join(","));
    let slow = format!("{l}.all(a, {l}.all(b, a + b > 0 && string(a) + string(b) != 'x'))");
    let message = refusal(&engine, &slow, &inputs(&[], &[]));
    assert!(message.contains("longer than"), "{message}");
    // The unmetered rule ran for seconds (see the runaway test above).
    let start = std::time::Instant::now();
    while engine.workers.runaway() > 0 {
        assert!(start.elapsed() < Duration::from_secs(1), "still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}
