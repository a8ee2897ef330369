//! `kubectl barelb plan` and `validate` through the real binary, on a real
//! git repository the test makes (the `git` CLI) and Services held in the
//! lab's real kube-apiserver (status written as the operator writes it):
//! a pool shrunk under allocated addresses breaks (exit 1, the Services
//! named), an added pool is safe (exit 0), a policy edit that denies a
//! namespace names it with its Services and rule, broken YAML and CEL
//! cannot be evaluated (exit 2, file and line) — and a snapshot written by
//! `kubectl barelb snapshot` gives the same answers as the live cluster.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use barelb_testsupport::lab::{Lab, lab, output_text};
use barelb_testsupport::unique_name;
use serde_json::Value;

/// A pool repo in a temporary directory, committed with the `git` CLI.
struct Repo(PathBuf);

impl Repo {
    fn new() -> Repo {
        let dir = std::env::temp_dir().join(unique_name("pool-repo"));
        std::fs::create_dir_all(&dir).unwrap();
        let r = Repo(dir);
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(&self.0)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `files` and commits them; returns the commit.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.0.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `kubectl barelb ARGS` with the lab's kubeconfig; `kubectl` (for
/// `kubectl kustomize`) is the lab's version-matched one.
fn barelb(lab: &Lab, args: &[&str]) -> Output {
    // In the lab's own directory: `tests/lab down` removes it with the rest.
    let wrapper =
        barelb_testsupport::lab::lab_dir().join(format!("kubectl-{}", std::process::id()));
    if !wrapper.exists() {
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec {} kubectl \"$@\"\n",
                lab.harness().display()
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&wrapper)
            .status()
            .unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_kubectl-barelb"))
        .args(args)
        .args(["--kubeconfig", &lab.kubeconfig.display().to_string()])
        .env("KUBECTL", &wrapper)
        .output()
        .unwrap()
}

fn pool(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata:\n  name: {name}\nspec:\n  addresses: [{cidr}]\n  announce: {{mode: L2}}\n"
    )
}

/// A LoadBalancer Service of `ns` holding `ip` from `pool`, as the operator
/// leaves it (ingress and Allocated condition in status).
fn held_service(lab: &Lab, ns: &str, name: &str, pool: &str, ip: &str) {
    let out = lab.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
         spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{{port: 80}}]}}\n"
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    let status = serde_json::json!({"status": {
        "loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]},
        "conditions": [{"type": "barelb.io/Allocated", "status": "True", "reason": "Allocated",
                        "message": format!("{ip} from AddressPool {pool}"),
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let out = lab.kubectl(&[
        "-n",
        ns,
        "patch",
        "service",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
}

/// `plan` from `base` to `head` of `dir`, live and from `snapshot`: the
/// same JSON (exit code included) both ways.
fn plan(
    lab: &Lab,
    repo: &Repo,
    dir: &str,
    base: &str,
    head: &str,
    snapshot: &Path,
) -> (i32, Value) {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plan",
            "-o",
            "json",
            "--repo",
            repo.0.to_str().unwrap(),
            "--path",
            dir,
            "--base",
            base,
            "--head",
            head,
        ];
        args.extend_from_slice(extra);
        let out = barelb(lab, &args);
        let code = out.status.code().unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (code, json, out)
    };
    let (code, json, out) = run(&[]);
    let (code2, json2, _) = run(&["--snapshot", snapshot.to_str().unwrap()]);
    assert_eq!((code, &json), (code2, &json2), "live and snapshot differ");
    if json.is_null() {
        return (
            code,
            Value::String(String::from_utf8_lossy(&out.stderr).to_string()),
        );
    }
    (code, json)
}

fn services(report: &Value) -> Vec<(String, bool)> {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["breaks"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn plan_names_what_a_pool_repo_change_breaks_live_and_from_a_snapshot() {
    let lab = lab("plan_names_what_a_pool_repo_change_breaks_live_and_from_a_snapshot");
    lab.install_crds();
    let id = unique_name("plan");
    let (shop, web) = (format!("{id}-shop"), format!("{id}-web"));
    for ns in [&shop, &web] {
        let out = lab.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: {ns}}}}}\n"
        ));
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let _namespaces = [&shop, &web].map(|ns| lab.delete_on_drop("namespace", ns, &[]));
    // Addresses only the lab's own ranges hold; nothing is announced here.
    let main = format!("{id}-main");
    held_service(&lab, &shop, "cart", &main, "198.18.200.100");
    held_service(&lab, &shop, "pay", &main, "198.18.200.5");
    held_service(&lab, &web, "site", &main, "198.18.200.6");

    let repo = Repo::new();
    let env = "environments/lab";
    let kustomization = "resources: [pools.yaml, policies.yaml]\n";
    let allow_all = format!(
        "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata:\n  name: {id}-teams\nspec:\n  rules:\n  - name: any-team\n    expression: \"true\"\n"
    );
    let c0 = repo.commit(
        &[
            (&format!("{env}/kustomization.yaml"), kustomization),
            (
                &format!("{env}/pools.yaml"),
                &pool(&main, "198.18.200.0/24"),
            ),
            (&format!("{env}/policies.yaml"), &allow_all),
        ],
        "the pools in force",
    );
    let snapshot = repo.0.join("snapshot.json");
    let out = barelb(&lab, &["snapshot", "-f", snapshot.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));

    // Shrinking the pool under 198.18.200.100: cart loses it.
    let shrink = repo.commit(
        &[(
            &format!("{env}/pools.yaml"),
            &pool(&main, "198.18.200.0/28"),
        )],
        "shrink",
    );
    let (code, report) = plan(&lab, &repo, env, &c0, &shrink, &snapshot);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        report["objects"][0]["change"], "256 → 16 addresses",
        "{report:#}"
    );
    assert_eq!(
        report["objects"][0]["origin"],
        format!("{env}/pools.yaml:1")
    );
    assert_eq!(
        services(&report),
        [(format!("{shop}/cart"), true)],
        "{report:#}"
    );

    // A new pool beside it: safe, the addition listed.
    let added = repo.commit(
        &[(
            &format!("{env}/pools.yaml"),
            &format!(
                "{}---\n{}",
                pool(&main, "198.18.200.0/24"),
                pool(&format!("{id}-more"), "198.18.201.0/24")
            ),
        )],
        "add a pool",
    );
    let (code, report) = plan(&lab, &repo, env, &c0, &added, &snapshot);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["objects"][0]["name"], format!("{id}-more"));
    assert_eq!(report["objects"][0]["change"], "added");
    assert!(services(&report).is_empty(), "{report:#}");

    // A policy that admits only the web team: shop's Services are denied,
    // with the rule.
    let web_only = allow_all
        .replace("name: any-team", "name: web-team-only")
        .replace("\"true\"", &format!("\"namespace.labels.team == '{web}'\""));
    let policy = repo.commit(&[(&format!("{env}/policies.yaml"), &web_only)], "web only");
    let (code, report) = plan(&lab, &repo, env, &c0, &policy, &snapshot);
    assert_eq!(code, 1, "{report:#}");
    let denied = &report["denied_namespaces"][&shop];
    assert_eq!(denied.as_array().map(Vec::len), Some(2), "{report:#}");
    assert!(
        denied[0].as_str().unwrap().contains("web-team-only"),
        "{report:#}"
    );
    assert!(
        report["denied_namespaces"].get(&web).is_none(),
        "{report:#}"
    );

    // CEL that does not compile, and YAML that does not parse: exit 2 with
    // the file and line.
    let bad_cel = allow_all.replace("\"true\"", "\"namespace.name ==\"");
    let cel = repo.commit(&[(&format!("{env}/policies.yaml"), &bad_cel)], "bad CEL");
    let (code, report) = plan(&lab, &repo, env, &c0, &cel, &snapshot);
    assert_eq!(code, 2, "{report:#}");
    let refused = report["refused"][0].as_str().unwrap();
    assert!(
        refused.starts_with(&format!("{env}/policies.yaml:1: ")),
        "{refused}"
    );

    let yaml = repo.commit(
        &[(
            &format!("{env}/pools.yaml"),
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {name: x\n",
        )],
        "bad YAML",
    );
    let (code, report) = plan(&lab, &repo, env, &c0, &yaml, &snapshot);
    assert_eq!(code, 2, "{report:#}");
    let msg = report.as_str().unwrap_or_default();
    assert!(
        msg.starts_with(&format!("kubectl barelb: {env}/pools.yaml:4: not YAML")),
        "{msg}"
    );

    // validate: the example pool repo is valid; the bad CEL is refused with
    // its file and line.
    let example =
        barelb_testsupport::repo_root().join("gitops-examples/pool-repo/environments/lab");
    let out = barelb(&lab, &["validate", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));
    repo.git(&["checkout", "-q", &cel]);
    let out = barelb(&lab, &["validate", repo.0.join(env).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{env}/policies.yaml:1: ")),
        "{text}"
    );
}

/// Help is complete for every subcommand; a bad flag is one line.
#[test]
fn help_is_complete_and_a_bad_flag_is_one_line() {
    let bin = env!("CARGO_BIN_EXE_kubectl-barelb");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let top = String::from_utf8_lossy(&run(&["--help"]).stdout).to_string();
    for sub in ["plan", "validate", "snapshot", "why", "status"] {
        assert!(top.contains(sub), "{top}");
        let out = run(&[sub, "--help"]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in ["--kubeconfig", "--context", "--output"] {
            assert!(text.contains(flag), "{sub} --help lacks {flag}:\n{text}");
        }
    }
    let plan_help = String::from_utf8_lossy(&run(&["plan", "--help"]).stdout).to_string();
    for flag in [
        "--repo",
        "--base",
        "--head",
        "--path",
        "--snapshot",
        "--load-balancer-class",
    ] {
        assert!(plan_help.contains(flag), "{plan_help}");
    }
    let out = run(&["plan", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("kubectl barelb: unexpected argument '--bogus'"),
        "{err}"
    );
    let out = run(&["plan", "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = run(&["why", "svc/a/b"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "kubectl barelb: svc/a/b: name a Service as svc/NAME (and -n NAMESPACE)"
    );
}
