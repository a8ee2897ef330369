//! barelb's CRDs against the real kube-apiserver of the lab (`tests/lab up`):
//! they install, valid objects are accepted and shown with their printer
//! columns, and invalid ones are refused by the apiserver itself with a
//! message that names the field.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

use barelb_testsupport::lab::{lab, output_text};
use barelb_testsupport::unique_name;

fn object(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: barelb.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec: {spec}\n"
    )
}

#[test]
fn valid_objects_are_accepted_and_listed_with_printer_columns() {
    let lab = lab("api::valid_objects_are_accepted_and_listed_with_printer_columns");
    lab.install_crds();

    let pool = unique_name("pool");
    let policy = unique_name("policy");
    let peer = unique_name("peer");
    let _guards = [
        lab.delete_on_drop("addresspool", &pool, &[]),
        lab.delete_on_drop("loadbalancerpolicy", &policy, &[]),
        lab.delete_on_drop("bgppeer", &peer, &[]),
    ];
    let objects = [
        object(
            "AddressPool",
            &pool,
            r#"{addresses: ["198.51.100.0/24", "2001:db8:1::/64", "203.0.113.10-203.0.113.50"], priority: 10, announce: {mode: BGP, bgp: {communities: ["64500:100", "no-export"], largeCommunities: ["64500:1:2"], localPref: 200, aggregationLength: 32}}}"#,
        ),
        object(
            "LoadBalancerPolicy",
            &policy,
            r#"{poolSelector: {matchLabels: {tier: shared}}, action: Deny, rules: [{name: team-matches, expression: "namespace.labels['team'] == pool.labels['team']", message: "namespace team must match pool team"}]}"#,
        ),
        object(
            "BGPPeer",
            &peer,
            r#"{peerAddress: 198.18.0.1, peerASN: 64500, myASN: 4200000000, holdTime: 9s, keepaliveTime: 3s, ebgpMultiHop: 2, passwordSecretRef: {name: bgp-auth, key: password}}"#,
        ),
    ];
    for obj in &objects {
        let out = lab.apply(obj);
        assert!(
            out.status.success(),
            "valid object refused:\n{obj}\n{}",
            output_text(&out)
        );
    }

    let out = lab.kubectl(&["get", "addresspools", &pool]);
    assert!(out.status.success(), "{}", output_text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "MODE", "ADDRESSES", "ALLOCATED", "READY", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("BGP") && table.contains("198.51.100.0/24"),
        "{table}"
    );

    let out = lab.kubectl(&["get", "bgppeer", &peer]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PEER ASN") && table.contains("4200000000"),
        "{}",
        output_text(&out)
    );

    // Short names and the category resolve.
    for args in [["get", "pool"], ["get", "lbp"], ["get", "barelb"]] {
        let out = lab.kubectl(&args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            output_text(&out)
        );
    }
}

#[test]
fn invalid_objects_are_refused_by_the_apiserver_naming_the_field() {
    let lab = lab("api::invalid_objects_are_refused_by_the_apiserver_naming_the_field");
    lab.install_crds();

    // (kind, spec, field the error must name, words the message must contain)
    let cases = [
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/33"], announce: {mode: L2}}"#,
            "spec.addresses",
            "must be a CIDR",
        ),
        (
            "AddressPool",
            r#"{addresses: ["not-an-address"], announce: {mode: L2}}"#,
            "spec.addresses",
            "must be a CIDR",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.5/24"], announce: {mode: L2}}"#,
            "spec.addresses",
            "host bits",
        ),
        (
            "AddressPool",
            r#"{addresses: ["203.0.113.50-203.0.113.10"], announce: {mode: L2}}"#,
            "spec.addresses",
            "must not start after it ends",
        ),
        (
            "AddressPool",
            r#"{addresses: ["203.0.113.1-2001:db8::1"], announce: {mode: L2}}"#,
            "spec.addresses",
            "same IP family",
        ),
        (
            "AddressPool",
            r#"{addresses: [], announce: {mode: L2}}"#,
            "spec.addresses",
            "at least 1 items",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/24"]}"#,
            "spec.announce",
            "Required",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/24"], announce: {mode: L3}}"#,
            "spec.announce.mode",
            "Unsupported value",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/24"], announce: {mode: L2, bgp: {localPref: 100}}}"#,
            "spec.announce",
            "only allowed with mode BGP",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/24"], announce: {mode: BGP, l2: {interfaces: [eth0]}}}"#,
            "spec.announce",
            "only allowed with mode L2",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/24"], announce: {mode: BGP, bgp: {communities: ["65536:1"]}}}"#,
            "spec.announce.bgp.communities",
            "0-65535",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/24"], announce: {mode: BGP, bgp: {largeCommunities: ["4294967296:1:1"]}}}"#,
            "spec.announce.bgp.largeCommunities",
            "0-4294967295",
        ),
        (
            "AddressPool",
            r#"{addresses: ["198.51.100.0/24"], announce: {mode: BGP, bgp: {aggregationLength: 33}}}"#,
            "spec.announce.bgp.aggregationLength",
            "less than or equal to 32",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.1, peerASN: 0, myASN: 64512}"#,
            "spec.peerASN",
            "greater than or equal to 1",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.1, peerASN: 64500, myASN: 4294967296}"#,
            "spec.myASN",
            "less than or equal to 4294967295",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.1, peerASN: 64500, myASN: 64512, holdTime: 2s}"#,
            "spec.holdTime",
            "0s or between 3s and 65535s",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.1, peerASN: 64500, myASN: 64512, holdTime: ninety}"#,
            "spec.holdTime",
            "should match",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.300, peerASN: 64500, myASN: 64512}"#,
            "spec.peerAddress",
            "IPv4 or IPv6",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.1, sourceAddress: "2001:db8::1", peerASN: 64500, myASN: 64512}"#,
            "spec.sourceAddress",
            "same IP family",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.1, peerASN: 64500, myASN: 64512, holdTime: 9s, keepaliveTime: 10s}"#,
            "spec.keepaliveTime",
            "shorter than holdTime",
        ),
        (
            "BGPPeer",
            r#"{peerAddress: 198.18.0.1, peerASN: 64500, myASN: 64512, passwordSecretRef: {name: Bad_Name, key: k}}"#,
            "spec.passwordSecretRef.name",
            "should match",
        ),
        (
            "LoadBalancerPolicy",
            r#"{rules: []}"#,
            "spec.rules",
            "at least 1 items",
        ),
        (
            "LoadBalancerPolicy",
            r#"{rules: [{name: a, expression: "true"}, {name: a, expression: "false"}]}"#,
            "spec.rules[1]",
            "Duplicate value",
        ),
        (
            "LoadBalancerPolicy",
            r#"{rules: [{name: Not_A_Name, expression: "true"}]}"#,
            "spec.rules[0].name",
            "should match",
        ),
        (
            "LoadBalancerPolicy",
            r#"{action: Block, rules: [{name: a, expression: "true"}]}"#,
            "spec.action",
            "Unsupported value",
        ),
    ];
    let mut failures = Vec::new();
    for (kind, spec, field, words) in cases {
        let name = unique_name("invalid");
        let _guard = lab.delete_on_drop(&kind.to_lowercase(), &name, &[]);
        let out = lab.apply(&object(kind, &name, spec));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!(
                "{kind} {spec}: accepted, expected a refusal naming {field}"
            ));
        } else if !(stderr.contains(&format!("{field}:")) && stderr.contains(words)) {
            failures.push(format!(
                "{kind} {spec}: refusal should name {field:?} and say {words:?}, got: {}",
                stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
