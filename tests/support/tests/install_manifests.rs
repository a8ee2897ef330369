//! What a user installs, checked without a cluster: the Helm chart lints,
//! renders exactly the kustomize base (less the Namespace, which Helm makes),
//! refuses wrong values with a line naming the value, and the images
//! scripts/images builds are reproducible and load into podman.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use barelb_testsupport::install::ok;
use barelb_testsupport::lab::{harness_bin, helm_bin};
use barelb_testsupport::{repo_root, unique_name};
use serde_json::Value;

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} (tests/lab build makes helm and kubectl)"))
}

fn helm(args: &[&str]) -> Output {
    run(Command::new(helm_bin()).args(args).current_dir(repo_root()))
}

/// Every object of a multi-document YAML stream, by (kind, namespace, name),
/// without the labels only Helm adds.
fn objects(yaml: &str) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        if let Some(labels) = v["metadata"]["labels"].as_object_mut() {
            labels.remove("helm.sh/chart");
            labels.remove("app.kubernetes.io/managed-by");
        }
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let key = (s("/kind"), s("/metadata/namespace"), s("/metadata/name"));
        assert!(out.insert(key.clone(), v).is_none(), "{key:?} twice");
    }
    out
}

/// Where two values first differ (a JSON pointer and both sides), if they do.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                first_difference(va, vb, format!("{at}/{k}"))
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(va, vb, format!("{at}/{i}"))),
        // kustomize writes 32.0 as 32: the same number.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{at}: chart {a} vs base {b}")),
    }
}

fn kustomize(dir: &str) -> String {
    ok(
        run(Command::new(harness_bin())
            .args(["kubectl", "kustomize", dir])
            .current_dir(repo_root())),
        "kubectl kustomize",
    )
}

#[test]
fn the_chart_lints_clean() {
    let out = ok(
        helm(&["lint", "--strict", "deploy/helm/barelb"]),
        "helm lint",
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn the_charts_defaults_render_the_kustomize_base() {
    let chart = objects(&ok(
        helm(&[
            "template",
            "barelb",
            "deploy/helm/barelb",
            "-n",
            "barelb-system",
            "--include-crds",
        ]),
        "helm template",
    ));
    let mut base = objects(&kustomize("deploy/kustomize/base"));
    // Helm makes the namespace (--create-namespace); the base carries it.
    let ns = base.remove(&("Namespace".into(), String::new(), "barelb-system".into()));
    assert!(ns.is_some(), "the base has no Namespace");
    let names =
        |m: &BTreeMap<(String, String, String), Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&chart),
        names(&base),
        "the chart and the base ship different objects"
    );
    for (key, want) in &base {
        if let Some(path) = first_difference(&chart[key], want, String::new()) {
            panic!(
                "{key:?} differs at {path} between deploy/helm/barelb (defaults) and deploy/kustomize/base"
            );
        }
    }
    assert!(base.len() >= 16, "{:?}", names(&base));
}

#[test]
fn wrong_values_fail_at_template_time_naming_the_value() {
    for (set, names) in [
        ("webhook.failurePolicy=Maybe", "/webhook/failurePolicy"),
        ("operator.replicas=-1", "/operator/replicas"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("speaker.leaveTimeout=soon", "/speaker/leaveTimeout"),
        ("operatr.replicas=2", "operatr"),
    ] {
        let out = helm(&["template", "barelb", "deploy/helm/barelb", "--set", set]);
        assert!(!out.status.success(), "--set {set} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().any(|l| l.contains(names) && l.len() < 200),
            "--set {set}: no one-line error naming {names}:\n{err}"
        );
    }
}

#[test]
fn the_lab_overlay_never_pulls() {
    let lab = objects(&kustomize("deploy/kustomize/overlays/lab"));
    let mut seen = 0;
    for ((kind, _, name), v) in &lab {
        if kind == "Deployment" || kind == "DaemonSet" {
            let c = &v["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["imagePullPolicy"], "Never", "{name}");
            seen += 1;
        }
    }
    assert_eq!(seen, 2);
}

#[test]
fn operator_and_speaker_run_with_least_privilege() {
    let base = objects(&kustomize("deploy/kustomize/base"));
    let get = |kind: &str, name: &str| {
        base.get(&(
            kind.to_string(),
            "barelb-system".to_string(),
            name.to_string(),
        ))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let op = &get("Deployment", "barelb-operator")["spec"]["template"]["spec"];
    assert_eq!(op["securityContext"]["runAsNonRoot"], true);
    let opc = &op["containers"][0]["securityContext"];
    assert_eq!(opc["readOnlyRootFilesystem"], true);
    assert_eq!(opc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(opc["capabilities"]["add"].is_null());
    let sp = &get("DaemonSet", "barelb-speaker")["spec"]["template"]["spec"];
    assert_eq!(sp["hostNetwork"], true);
    assert_eq!(sp["automountServiceAccountToken"], false);
    let spc = &sp["containers"][0]["securityContext"];
    assert_eq!(spc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        spc["capabilities"]["add"],
        serde_json::json!(["NET_RAW", "NET_ADMIN"])
    );
    assert_eq!(spc["allowPrivilegeEscalation"], false);
    assert_eq!(spc["readOnlyRootFilesystem"], true);
    let token = &sp["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "barelb-control");
    // Nothing binds the speaker's account to any role.
    for ((kind, _, name), v) in &base {
        if kind.ends_with("Binding") {
            for s in v["subjects"].as_array().unwrap() {
                assert_ne!(
                    s["name"], "barelb-speaker",
                    "{kind} {name} grants the speaker rights"
                );
            }
        }
    }
}

/// `scripts/images --debug --out DIR`: the reference, digest and size lines.
fn build_images(out: &Path) -> Vec<String> {
    let text = ok(
        run(Command::new(repo_root().join("scripts/images"))
            .args(["--debug", "--out"])
            .arg(out)
            .current_dir(repo_root())),
        "scripts/images",
    );
    text.lines().map(str::to_string).collect()
}

fn tar_member(archive: &Path, member: &str) -> Value {
    let out = ok(
        run(Command::new("tar").arg("-xOf").arg(archive).arg(member)),
        "tar",
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn images_are_reproducible_and_load_into_podman() {
    let base = repo_root().join("target").join(unique_name("images-test"));
    let (a, b) = (base.join("a"), base.join("b"));
    let first = build_images(&a);
    let second = build_images(&b);
    let digests = |lines: &[String]| {
        lines
            .iter()
            .map(|l| l.split('\t').take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(
        digests(&first),
        digests(&second),
        "two builds of one tree differ"
    );
    for name in ["barelb-operator", "barelb-speaker"] {
        let archive = a.join(format!("{name}.tar"));
        let index = tar_member(&archive, "./index.json");
        assert_eq!(
            index["manifests"][0]["annotations"]["io.containerd.image.name"],
            format!("barelb.io/{name}:0.1.0")
        );
        let docker = tar_member(&archive, "./manifest.json");
        let config = tar_member(
            &archive,
            &format!("./{}", docker[0]["Config"].as_str().unwrap()),
        );
        let user = config["config"]["User"].as_str().unwrap();
        if name == "barelb-operator" {
            assert_eq!(user, "65532:65532", "the operator runs as non-root");
        }
        // podman's own storage in a throwaway directory: nothing global
        // (a short path: podman refuses a run root over 50 characters).
        let root = std::path::PathBuf::from(format!("/tmp/barelb-podman-{}", std::process::id()));
        let podman = |args: &[&str]| {
            let mut cmd = Command::new("podman");
            cmd.arg("--root")
                .arg(root.join("root"))
                .arg("--runroot")
                .arg(root.join("run"));
            cmd.args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ]);
            cmd.args(args);
            ok(run(&mut cmd), &format!("podman {args:?}"))
        };
        let loaded = podman(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert!(
            loaded.contains(&format!("barelb.io/{name}:0.1.0")),
            "{loaded}"
        );
        // Its layer alone runs the binary: every library it loads is in it.
        let rootfs = base.join(format!("rootfs-{name}"));
        std::fs::create_dir_all(&rootfs).unwrap();
        let layer = docker[0]["Layers"][0].as_str().unwrap();
        let extract = format!(
            "tar -xOf {} ./{layer} | tar -xz -C {}",
            archive.display(),
            rootfs.display()
        );
        ok(
            run(Command::new("sh").args(["-c", &extract])),
            "extract the layer",
        );
        let version = ok(
            run(Command::new("chroot")
                .arg(&rootfs)
                .args([&format!("/usr/local/bin/{name}"), "--version"])),
            "the image's binary",
        );
        assert!(version.starts_with(name), "{version}");
    }
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(format!("/tmp/barelb-podman-{}", std::process::id()));
}
