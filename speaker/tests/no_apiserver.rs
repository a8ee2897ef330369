//! Speakers hold no kube-apiserver watches — by construction: the speaker
//! has no Kubernetes client in its dependency graph at all, so it cannot
//! open a watch (or any apiserver request). Checked on the real graph with
//! `cargo tree`, so adding a kube dependency to the speaker fails here.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[test]
fn the_speaker_cannot_talk_to_the_apiserver() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "-p",
            "barelb-speaker",
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
    assert!(tree.lines().count() > 20, "implausibly small tree:\n{tree}");
    let kube: Vec<&str> = tree
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or_default();
            name == "kube" || name.starts_with("kube-") || name == "k8s-openapi"
        })
        .collect();
    assert!(kube.is_empty(), "the speaker depends on {kube:?}");
}
