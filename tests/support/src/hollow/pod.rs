//! What a kubelet does for a hollow node's speaker Pod, done by the
//! harness: the Pod's container as a process (its binary, arguments and
//! environment), its status reported, its readiness awaited.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::netlab::Process;
use crate::peers::Peer;
use crate::repo_root;

/// Waits until `speaker` answers `url` in `netns` (barelb's `/readyz`:
/// connected to the operator); panics if it stops first.
pub(super) fn wait_serving(netns: &str, url: &str, log: &Path, speaker: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                url,
            ])
            .output()
            .expect("run curl");
        if out.status.success() {
            return;
        }
        assert!(
            speaker.is_running(),
            "a hollow speaker stopped before serving {url} (log: {})",
            log.display()
        );
        assert!(
            Instant::now() < deadline,
            "a hollow speaker does not serve {url} in {netns} after 120 s (log: {})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where a speaker started with `args` on `ip` says it is up: barelb's
/// `/readyz` on `--metrics-addr`, MetalLB's `/metrics` on `--port` (its
/// probes'; it listens on its host's address).
pub(super) fn metrics_url(peer: Peer, args: &[String], ip: &str) -> String {
    let (flag, path) = match peer {
        Peer::Barelb => ("--metrics-addr=", "readyz"),
        Peer::MetalLb => ("--port=", "metrics"),
    };
    let port = args
        .iter()
        .find_map(|a| a.strip_prefix(flag))
        .and_then(|v| v.rsplit(':').next())
        .unwrap_or_else(|| {
            panic!(
                "{} speaker's arguments have no {flag}: {args:?}",
                peer.name()
            )
        });
    format!("http://{ip}:{port}/{path}")
}

/// The Pod's first container as a process: its image's binary name, its
/// arguments and its environment (literal values and the downward API's
/// fields; `$(VAR)` expanded as the kubelet does).
pub(super) fn launch(pod: &Value, ip: &str) -> (String, Vec<String>, Vec<(String, String)>) {
    let container = &pod["spec"]["containers"][0];
    let mut env: Vec<(String, String)> = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else {
            match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("spec.nodeName") => {
                    pod["spec"]["nodeName"].as_str().unwrap_or_default().into()
                }
                Some("metadata.name") => {
                    pod["metadata"]["name"].as_str().unwrap_or_default().into()
                }
                Some("metadata.namespace") => pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                Some("status.podIP" | "status.hostIP") => ip.into(),
                _ => continue,
            }
        };
        env.push((name, value));
    }
    let args = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|a| expand(a, &env))
        .collect();
    let image = container["image"].as_str().unwrap_or_default().to_string();
    (image, args, env)
}

/// `$(NAME)` replaced by the value of an earlier variable.
pub(super) fn expand(s: &str, env: &[(String, String)]) -> String {
    env.iter()
        .fold(s.to_string(), |s, (k, v)| s.replace(&format!("$({k})"), v))
}

/// The binary `image` was built from (the images hold nothing else).
pub(super) fn speaker_binary(peer: Peer, debug: bool, image: &str) -> PathBuf {
    let root = repo_root();
    match peer {
        Peer::Barelb if debug => root.join("target/debug/barelb-speaker"),
        Peer::Barelb => root.join("target/image-build/release/barelb-speaker"),
        Peer::MetalLb => {
            assert!(
                image.contains("metallb/speaker"),
                "MetalLB's speaker image: {image}"
            );
            root.join("target/metallb/speaker")
        }
    }
}

/// Starts `bin ARGS` in `netns` with `env`, its output to `log`.
pub(super) fn spawn(
    netns: &str,
    bin: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Process {
    let file = std::fs::File::create(log).expect("create a speaker log");
    let child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone the log's handle"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    Process::from(child)
}

pub(super) fn pod_name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or_default()
}

/// Reports the Pod Running and Ready on `ip` (host network), as its kubelet
/// would once the container started.
pub(super) async fn report_running(pods: &Api<Pod>, pod: &Value, ip: &str) -> anyhow::Result<()> {
    let now = Timestamp::now().to_string();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let container = &pod["spec"]["containers"][0];
    let status = json!({"status": {
        "phase": "Running", "hostIP": ip, "hostIPs": [{"ip": ip}],
        "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
        "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
        "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
            "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}],
    }});
    pods.patch_status(
        pod_name(pod),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await?;
    Ok(())
}

/// Key `key` of ConfigMap `ns`/`name`.
pub(super) async fn config_value(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> anyhow::Result<String> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let map = maps.get(name).await?;
    map.data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| anyhow::anyhow!("ConfigMap {ns}/{name} has no {key}"))
}

/// Key `key` of Secret `ns`/`name`, decoded.
pub(super) async fn secret_value(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> anyhow::Result<Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets.get(name).await?;
    secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0)
        .ok_or_else(|| anyhow::anyhow!("Secret {ns}/{name} has no {key}"))
}
