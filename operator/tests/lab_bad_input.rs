//! Bad input through the real apiserver: every field of every barelb CRD
//! (read from the generated CRDs' schemas, so a new field is covered the
//! day it is added) and every annotation barelb reads, set to invalid and
//! boundary values one at a time on an otherwise valid object. Each must
//! be refused by the apiserver or the webhook with a one-line message that
//! names the object, or be admitted and judged by the operator on the
//! object's status (also one line). Meanwhile a canary Service keeps
//! getting addresses, and the operator never panics or stops.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Instance, TEST_LABEL, free_local_addr};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

/// A field's path in the spec (`*` for an array's items) and its schema.
fn fields(schema: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    out.push((path.clone(), schema.clone()));
    if let Some(props) = schema["properties"].as_object() {
        for (k, v) in props {
            path.push(k.clone());
            fields(v, path, out);
            path.pop();
        }
    }
    if schema["items"].is_object() {
        path.push("*".into());
        fields(&schema["items"], path, out);
        path.pop();
    }
}

/// Invalid and boundary values for a field of `schema`.
fn bad_values(schema: &Value) -> Vec<Value> {
    let max_len = schema["maxLength"].as_u64().unwrap_or(300) as usize;
    let mut v = match schema["type"].as_str() {
        Some("string") => vec![
            json!(""),
            json!(" "),
            json!("x".repeat(max_len + 1)),
            json!("\u{1F4A5}\u{0301}"),
            json!("a\nb"),
            json!("-1"),
            json!("999.0.0.1"),
            json!("10.0.0.0/33"),
            json!("::/129"),
            json!(7),
        ],
        Some("integer") => {
            let mut v = vec![json!(-1), json!(0), json!(i64::MAX), json!("7"), json!(1.5)];
            if let Some(max) = schema["maximum"].as_i64() {
                v.push(json!(max.saturating_add(1)));
            }
            if let Some(min) = schema["minimum"].as_i64() {
                v.push(json!(min.saturating_sub(1)));
            }
            v
        }
        Some("boolean") => vec![json!("true"), json!(1)],
        Some("array") => {
            let n = schema["maxItems"].as_u64().unwrap_or(300) as usize + 1;
            vec![json!([]), json!("x"), json!(vec![json!("10.0.0.1"); n])]
        }
        Some("object") => vec![json!("x"), json!({}), json!({"unknownField": 1})],
        _ => vec![json!(-1), json!("abc"), json!({})],
    };
    if schema["enum"].is_array() {
        v.push(json!("NotOneOfThem"));
    }
    v
}

/// `obj` with the field at `path` (under `spec`) set to `value`; `*`
/// is the first item (made when missing).
fn with(obj: &Value, path: &[String], value: Value) -> Value {
    let mut out = obj.clone();
    let mut at = &mut out["spec"];
    for (i, p) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if p == "*" {
            if !at.is_array() || at.as_array().unwrap().is_empty() {
                *at = json!([{}]);
            }
            at = &mut at[0];
        } else {
            if !at.is_object() {
                *at = json!({});
            }
            at = &mut at[p.as_str()];
        }
        if last {
            *at = value.clone();
        }
    }
    if path.is_empty() {
        out["spec"] = value;
    }
    out
}

/// What came of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Result {
    RefusedByApiserver,
    RefusedByWebhook,
    AdmittedValid,
    AdmittedReported,
}

fn one_line(what: &str, msg: &str) {
    // One line (an apiserver refusal of many bad items lists each on it).
    assert!(
        !msg.contains('\n'),
        "{what}: a message of more than one line: {msg:?}"
    );
}

/// The object's judgement on its status: Ready (pools, policies) or the
/// peer's sessions; None while the operator has not written one.
fn ready(obj: &DynamicObject) -> Option<(bool, String)> {
    let conds = obj.data["status"]["conditions"].as_array()?;
    let c = conds.iter().find(|c| c["type"] == "Ready")?;
    Some((
        c["status"] == "True",
        c["message"].as_str().unwrap_or("").to_string(),
    ))
}

struct Kind {
    kind: &'static str,
    plural: &'static str,
    crd: &'static str,
    base: Value,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_crd_field_and_annotation_refused_or_reported_while_a_canary_is_served() {
    let mut t = Instance::new("operator::bad_input").await;
    let sock = barelb_testsupport::lab::lab_dir().join(format!("{}-control.sock", t.id));
    let control = format!("unix:{}", sock.display());
    let metrics = free_local_addr();
    let (mut op, _) = t.webhook_operator(
        &metrics,
        &["--control-addr", &control, "--speaker-service-account", ""],
    );
    t.wait_webhook();
    let pool = t.pool(
        "canary",
        r#"{addresses: ["198.51.100.160/28"], announce: {mode: L2}}"#,
    );
    let label = json!({TEST_LABEL: t.id});
    let kinds = [
        Kind {
            kind: "AddressPool",
            plural: "addresspools",
            crd: "addresspools",
            base: json!({"spec": {"addresses": ["198.51.100.240/29"], "announce": {"mode": "L2"}}}),
        },
        Kind {
            kind: "LoadBalancerPolicy",
            plural: "loadbalancerpolicies",
            crd: "loadbalancerpolicies",
            base: json!({"spec": {"poolSelector": {"matchLabels": label},
                "rules": [{"name": "r", "expression": "true", "message": "m"}]}}),
        },
        Kind {
            kind: "BGPPeer",
            plural: "bgppeers",
            crd: "bgppeers",
            base: json!({"spec": {"peerAddress": "198.51.100.1", "myASN": 64512, "peerASN": 64513}}),
        },
    ];
    let mut tally: BTreeMap<(&str, Result), usize> = BTreeMap::new();
    let mut n = 0usize;
    for k in &kinds {
        let text = std::fs::read_to_string(
            barelb_testsupport::repo_root().join(format!("deploy/crds/{}.yaml", k.crd)),
        )
        .unwrap();
        let crd: Value = serde_yaml::from_str(&text).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut all = Vec::new();
        fields(schema, &mut Vec::new(), &mut all);
        let gvk = GroupVersionKind::gvk("barelb.io", "v1alpha1", k.kind);
        let api: Api<DynamicObject> = Api::all_with(
            t.client.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, k.plural),
        );
        for (path, field) in &all {
            for value in bad_values(field) {
                n += 1;
                let name = format!("{}-bad-{n}", t.id);
                let what = format!(
                    "{} {name} spec.{} = {}",
                    k.kind,
                    path.join("."),
                    short(&value)
                );
                let mut obj = with(&k.base, path, value);
                obj["apiVersion"] = json!("barelb.io/v1alpha1");
                obj["kind"] = json!(k.kind);
                obj["metadata"] = json!({"name": name, "labels": label});
                let obj: DynamicObject = serde_json::from_value(obj).unwrap();
                let result = match api.create(&PostParams::default(), &obj).await {
                    Err(kube::Error::Api(e)) => {
                        one_line(&what, &e.message);
                        assert!(
                            e.message.contains(&name),
                            "{what}: the message does not name it: {}",
                            e.message
                        );
                        if e.message.contains("admission webhook") {
                            Result::RefusedByWebhook
                        } else {
                            Result::RefusedByApiserver
                        }
                    }
                    Err(e) => panic!("{what}: {e}"),
                    // A BGPPeer the webhook admits is one the operator can
                    // read (the webhook runs its own peer_config); a
                    // scoped instance writes status only for peers its
                    // pools use, so there is none to wait for here.
                    Ok(_) if k.kind == "BGPPeer" => {
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                        Result::AdmittedValid
                    }
                    Ok(_) => {
                        let judged = judged(&api, &name, &what).await;
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                        judged
                    }
                };
                *tally.entry((k.kind, result)).or_default() += 1;
                if n.is_multiple_of(40) {
                    canary(&t, &pool, n).await;
                }
            }
        }
    }
    let annotations = annotation_cases(&t).await;
    for (r, count) in annotations {
        *tally.entry(("Service annotation", r)).or_default() += count;
    }
    canary(&t, &pool, n + 1).await;
    assert!(op.is_running(), "the operator stopped:\n{}", op.log_text());
    let log = op.log_text();
    assert!(!log.contains("panicked"), "{log}");
    let mut table = vec![
        "| object | cases | refused by the apiserver | refused by the webhook | admitted, valid | admitted, judged on status |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    for kind in [
        "AddressPool",
        "LoadBalancerPolicy",
        "BGPPeer",
        "Service annotation",
    ] {
        let c = |r| tally.get(&(kind, r)).copied().unwrap_or(0);
        let row = [
            Result::RefusedByApiserver,
            Result::RefusedByWebhook,
            Result::AdmittedValid,
            Result::AdmittedReported,
        ]
        .map(c);
        table.push(format!(
            "| {kind} | {} | {} | {} | {} | {} |",
            row.iter().sum::<usize>(),
            row[0],
            row[1],
            row[2],
            row[3]
        ));
    }
    eprintln!("{}", table.join("\n"));
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…({} bytes)", &s[..40], s.len())
    } else {
        s
    }
}

/// An admitted object: the operator must say what it makes of it.
async fn judged(api: &Api<DynamicObject>, name: &str, what: &str) -> Result {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let obj = api.get(name).await.unwrap();
        if let Some((ok, msg)) = ready(&obj) {
            one_line(what, &msg);
            return if ok {
                Result::AdmittedValid
            } else {
                Result::AdmittedReported
            };
        }
        assert!(
            Instant::now() < deadline,
            "{what}: admitted, and no status after 15 s: {:?}",
            obj.data
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Service from the canary pool: addressed within 15 s, then deleted.
async fn canary(t: &Instance, pool: &str, n: usize) {
    let name = format!("canary-{n}");
    t.service(&name, json!({}), json!({"barelb.io/pool": pool}))
        .await;
    let ips = t.wait_ips(&name, 1).await;
    assert!(!ips.is_empty(), "canary {n}");
    t.delete_service(&name).await;
}

/// Every annotation barelb reads, with bad values, on a Service.
async fn annotation_cases(t: &Instance) -> BTreeMap<Result, usize> {
    let keys = [
        barelb_core::names::annotations::POOL,
        barelb_core::names::annotations::IPS,
        barelb_core::names::annotations::SHARING_KEY,
        barelb_core::names::annotations::ALLOW_ORPHAN,
    ];
    let values = [
        "".to_string(),
        " ".into(),
        "x".repeat(300),
        "999.0.0.1".into(),
        "198.51.100.160,,".into(),
        "198.51.100.160,198.51.100.161,198.51.100.162".into(),
        "::ffff:198.51.100.160".into(),
        "10.0.0.0/24".into(),
        "\u{1F4A5}".into(),
        "a\nb".into(),
        "no-such-pool".into(),
    ];
    let mut tally = BTreeMap::new();
    let mut i = 0;
    for key in keys {
        for value in &values {
            i += 1;
            let name = format!("ann-{i}");
            let what = format!("Service {name} {key}={}", short(&json!(value)));
            let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": {key: value}},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": t.class, "ports": [{"port": 80}]},
            }))
            .unwrap();
            let result = match t.services().create(&PostParams::default(), &svc).await {
                Err(kube::Error::Api(e)) => {
                    one_line(&what, &e.message);
                    assert!(e.message.contains(&name), "{what}: {}", e.message);
                    if e.message.contains("admission webhook") {
                        Result::RefusedByWebhook
                    } else {
                        Result::RefusedByApiserver
                    }
                }
                Err(e) => panic!("{what}: {e}"),
                Ok(_) => {
                    let s = t
                        .wait_for(&name, "an Allocated condition", |s| {
                            common::allocated(s).is_some()
                        })
                        .await;
                    let (status, _, msg) = common::allocated(&s).unwrap();
                    one_line(&what, &msg);
                    t.delete_service(&name).await;
                    if status == "True" {
                        Result::AdmittedValid
                    } else {
                        Result::AdmittedReported
                    }
                }
            };
            *tally.entry(result).or_default() += 1;
        }
    }
    tally
}
