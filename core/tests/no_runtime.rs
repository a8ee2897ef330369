//! barelb-core makes decisions and nothing else: no Kubernetes client, no
//! async runtime, no gRPC. Checked on the real dependency graph, so a kube,
//! tokio or tonic dependency fails here (k8s-openapi, the plain structs of
//! Kubernetes objects, is allowed: Services arrive so).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[test]
fn the_core_holds_no_client_runtime_or_rpc() {
    let deps = barelb_testsupport::dependencies("barelb-core");
    assert!(deps.iter().any(|d| d == "k8s-openapi"), "{deps:?}");
    let forbidden: Vec<&String> = deps
        .iter()
        .filter(|name| {
            *name == "kube"
                || name.starts_with("kube-")
                || ["tokio", "tonic", "hyper", "tower", "futures"].contains(&name.as_str())
                || name.starts_with("tokio-")
                || name.starts_with("tonic-")
        })
        .collect();
    assert!(forbidden.is_empty(), "barelb-core depends on {forbidden:?}");
}
