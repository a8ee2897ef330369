//! The operator's command line, without a cluster: mistakes are refused
//! at start with one line that names the flag and the fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn out_of_a_cluster_the_webhook_needs_a_url() {
    let out = Command::new(env!("CARGO_BIN_EXE_barelb-operator"))
        .args(["--webhook=true", "--control=false"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        // Nothing to reach: the refusal must come before any connection.
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("barelb-operator: --webhook-url is required outside a cluster"),
        "{err}"
    );
    assert!(lines[0].contains("--webhook=false"), "{err}");
}

#[test]
fn a_malformed_duration_flag_is_refused_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_barelb-operator"))
        .args(["--lease-duration", "15 "])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"15 \" is not a duration"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
