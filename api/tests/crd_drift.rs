//! The committed CRD YAML (deploy/crds, the kustomize base, the Helm chart)
//! must be exactly what crdgen prints: a type change without regenerating
//! fails here, not in a cluster.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

#[test]
fn committed_crds_match_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in barelb_api::crd::SHIPPED_IN {
        for (file, crd) in barelb_api::crd::all() {
            let expected = barelb_api::crd::to_yaml(&crd).expect("render CRD");
            let committed = std::fs::read_to_string(root.join(dir).join(file)).unwrap_or_default();
            assert!(
                committed == expected,
                "{dir}/{file} is out of date; run `cargo run -p barelb-api --bin crdgen`"
            );
        }
    }
}

#[test]
fn crds_are_cluster_scoped_with_status_and_category() {
    for (file, crd) in barelb_api::crd::all() {
        assert_eq!(crd.spec.scope, "Cluster", "{file}");
        assert_eq!(crd.spec.group, "barelb.io", "{file}");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1", "{file}");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: status subresource"
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["barelb".to_string()][..]),
            "{file}"
        );
        assert!(
            !crd.spec
                .names
                .short_names
                .clone()
                .unwrap_or_default()
                .is_empty(),
            "{file}: short names"
        );
        let yaml = barelb_api::crd::to_yaml(&crd).expect("render CRD");
        // No defaults anywhere: they would show up as GitOps diff noise.
        assert!(!yaml.contains("default:"), "{file} declares a default");
    }
}
