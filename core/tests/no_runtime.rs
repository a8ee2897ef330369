//! barelb-core makes decisions and nothing else: no Kubernetes client, no
//! async runtime, no gRPC. Checked on the real dependency graph with
//! `cargo tree`, so a kube, tokio or tonic dependency fails here (k8s-openapi,
//! plain structs of Kubernetes objects, is allowed: Services arrive so).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[test]
fn the_core_holds_no_client_runtime_or_rpc() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "-p",
            "barelb-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().count() > 10, "implausibly small tree:\n{tree}");
    assert!(
        tree.contains("k8s-openapi"),
        "the tree lacks k8s-openapi:\n{tree}"
    );
    let forbidden: Vec<&str> = tree
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or_default();
            name == "kube"
                || name.starts_with("kube-")
                || ["tokio", "tonic", "hyper", "tower", "futures"].contains(&name)
                || name.starts_with("tokio-")
                || name.starts_with("tonic-")
        })
        .collect();
    assert!(forbidden.is_empty(), "barelb-core depends on {forbidden:?}");
}
