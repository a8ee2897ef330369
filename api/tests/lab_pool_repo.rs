//! The example pool repo (`gitops-examples/pool-repo`) as ArgoCD would see
//! it: every environment renders with kustomize and the real apiserver
//! accepts every object (server-side dry run: schema and CEL validations),
//! and its policies are the tested ones from `policies/examples`.
//! `scripts/demo` applies the lab environment for real.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

use std::collections::BTreeMap;

use barelb_testsupport::lab::{lab, output_text};
use barelb_testsupport::repo_root;

const ENVIRONMENTS: [&str; 2] = ["lab", "prod"];

#[test]
fn pool_repo_policies_are_the_tested_examples() {
    let dir = repo_root().join("gitops-examples/pool-repo/policies");
    let mut copies = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "kustomization.yaml" {
            continue;
        }
        let example = repo_root().join("policies/examples").join(&name);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(&example)
                .unwrap_or_else(|e| panic!("{name} is not in policies/examples: {e}")),
            "pool-repo/policies/{name} differs from policies/examples/{name}: copy it again"
        );
        copies += 1;
    }
    assert!(copies >= 3, "the pool repo ships {copies} policies");
}

#[test]
fn every_environment_renders_and_the_apiserver_accepts_it() {
    let lab = lab("api::every_environment_renders_and_the_apiserver_accepts_it");
    lab.install_crds();
    for env in ENVIRONMENTS {
        let dir = repo_root()
            .join("gitops-examples/pool-repo/environments")
            .join(env);
        let dir = dir.to_string_lossy();
        let out = lab.kubectl(&["kustomize", &dir]);
        assert!(out.status.success(), "{env}: {}", output_text(&out));
        let rendered = String::from_utf8(out.stdout).unwrap();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for doc in serde_yaml::Deserializer::from_str(&rendered) {
            let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
            assert_eq!(
                v["apiVersion"].as_str(),
                Some("barelb.io/v1alpha1"),
                "{env}: {v:?}"
            );
            *kinds
                .entry(v["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        for kind in ["AddressPool", "LoadBalancerPolicy", "BGPPeer"] {
            assert!(kinds.contains_key(kind), "{env} has no {kind}: {kinds:?}");
        }
        let out = lab.apply_args(&rendered, &["--dry-run=server"]);
        assert!(
            out.status.success(),
            "{env} refused by the apiserver: {}",
            output_text(&out)
        );
        let accepted = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            accepted
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count(),
            kinds.values().sum::<usize>(),
            "{env}: {accepted}"
        );
    }
}
