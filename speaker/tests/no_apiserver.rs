//! Speakers hold no kube-apiserver watches — by construction: the speaker
//! has no Kubernetes client in its dependency graph at all, so it cannot
//! open a watch (or any apiserver request). Checked on the real graph, so
//! adding a kube dependency to the speaker fails here.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[test]
fn the_speaker_cannot_talk_to_the_apiserver() {
    let deps = barelb_testsupport::dependencies("barelb-speaker");
    let kube: Vec<&String> = deps
        .iter()
        .filter(|name| *name == "kube" || name.starts_with("kube-") || *name == "k8s-openapi")
        .collect();
    assert!(kube.is_empty(), "the speaker depends on {kube:?}");
}
