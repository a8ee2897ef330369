//! Webhook helpers shared by the admission and tenancy tests: labelled
//! namespaces, Service YAML, kubectl denials, the team-match policy.

use barelb_testsupport::lab::output_text;

use super::{Instance, TEST_LABEL};

/// A namespace labelled for this test (so its webhook sees it) and `labels`.
pub fn namespace(t: &mut Instance, suffix: &str, labels: &[&str]) -> String {
    let ns = format!("{}-{suffix}", t.id);
    let out = t.lab.kubectl(&["create", "namespace", &ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut args = vec!["label".to_string(), "namespace".into(), ns.clone()];
    args.push(format!("{TEST_LABEL}={}", t.id));
    args.extend(labels.iter().map(|l| l.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = t.lab.kubectl(&args);
    assert!(out.status.success(), "{}", output_text(&out));
    t.guard("namespace", &ns);
    ns
}

pub fn service_yaml(
    t: &Instance,
    ns: &str,
    name: &str,
    annotations: &str,
    spec_extra: &str,
) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{{annotations}}}\nspec:\n  type: LoadBalancer\n  loadBalancerClass: {class}\n  ports: [{{port: 80}}]\n{spec_extra}",
        class = t.class
    )
}

/// Applies `yaml` expecting a webhook denial; returns kubectl's error line.
pub fn refused(t: &Instance, yaml: &str, hook: &str) -> String {
    let out = t.lab.apply(yaml);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected a denial: {}",
        output_text(&out)
    );
    let prefix = format!("admission webhook \"{hook}\" denied the request: ");
    let line = text
        .lines()
        .find(|l| l.contains(&prefix))
        .unwrap_or_else(|| panic!("no webhook denial in: {text}"));
    line.split_once(&prefix).unwrap().1.to_string()
}

/// The team-match example policy, scoped to this test's pools and objects.
pub fn team_policy(t: &Instance) -> String {
    let text = std::fs::read_to_string(
        barelb_testsupport::repo_root().join("policies/examples/team-match.yaml"),
    )
    .unwrap();
    let name = format!("{}-team-match", t.id);
    text.replace(
        "name: team-match",
        &format!("name: {name}\n  labels: {{{TEST_LABEL}: {}}}", t.id),
    )
    .replace(
        "  poolSelector:\n",
        &format!(
            "  poolSelector:\n    matchLabels: {{{TEST_LABEL}: {}}}\n",
            t.id
        ),
    )
}
