//! The Kubernetes lab: a real kube-apiserver (+ controller-manager) started by
//! `tests/lab up`, found through the kubeconfig file it writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail};

/// Handle on the running lab.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Kubeconfig of the lab's admin user.
    pub kubeconfig: PathBuf,
    kube_lab: PathBuf,
}

/// The harness binary `tests/lab` builds (one for every lab directory).
pub fn harness_bin() -> PathBuf {
    crate::repo_root().join("target/kube-lab/kube-lab")
}

/// Helm, built by `tests/lab build` beside the harness (test tooling).
pub fn helm_bin() -> PathBuf {
    crate::repo_root().join("target/kube-lab/helm")
}

/// Lease flags for an operator whose leader a test or chaos run kills: the
/// lab's timing, so a standby takes over in ~2 s (the default 15 s / 10 s /
/// 2 s would leave a leader killed every 5 s never replaced).
pub const FAST_LEASE: [&str; 6] = [
    "--lease-duration",
    "2s",
    "--renew-deadline",
    "1s",
    "--retry-period",
    "500ms",
];

/// Directory `tests/lab` keeps its state and kubeconfig in.
pub fn lab_dir() -> PathBuf {
    std::env::var_os("BARELB_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target/lab"))
}

/// The running lab. Panics with the fix when it is not up: a lab test must
/// fail, never skip, when the lab cannot start. Each call is recorded in the
/// ledger `tests/lab` counts, so the test command can say how many tests ran
/// against the real apiserver.
pub fn lab(test_name: &str) -> Lab {
    match try_lab() {
        Ok(lab) => {
            record(test_name);
            lab
        }
        Err(err) => panic!("the Kubernetes lab is not up ({err:#}); start it with `tests/lab up`"),
    }
}

fn try_lab() -> anyhow::Result<Lab> {
    Lab::in_dir(&lab_dir())
}

impl Lab {
    /// The lab whose state is in `dir` (`BARELB_LAB_DIR` of `tests/lab`).
    pub(crate) fn in_dir(dir: &Path) -> anyhow::Result<Lab> {
        let dir = dir.to_path_buf();
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&dir))
            .unwrap_or_else(|| dir.join("kubeconfig"));
        let kube_lab = harness_bin();
        if !kubeconfig.is_file() {
            bail!("no kubeconfig at {}", kubeconfig.display());
        }
        if !kube_lab.is_file() {
            bail!("no harness binary at {}", kube_lab.display());
        }
        Ok(Lab {
            kubeconfig,
            kube_lab,
        })
    }
}

fn record(test_name: &str) {
    record_in(&lab_dir(), test_name);
}

/// Appends `test_name` to the ledger of the lab in `dir`.
pub(crate) fn record_in(dir: &Path, test_name: &str) {
    let ledger = dir.join("lab-tests.ledger");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ledger)
    {
        // One write per line: with O_APPEND a single short write stays whole
        // when parallel tests record at once (writeln! would issue two).
        let _ = f.write_all(format!("{test_name}\n").as_bytes());
    }
}

impl Lab {
    /// `kubectl ARGS...` against the lab with the version-matched kubectl.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// `kubectl ARGS...` with `stdin` piped in (e.g. `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.kube_lab);
        cmd.arg("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut run = || -> anyhow::Result<Output> {
            let mut child = cmd.spawn().context("spawn kubectl")?;
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(input.as_bytes())
                    .context("write kubectl stdin")?;
            }
            child.wait_with_output().context("wait for kubectl")
        };
        match run() {
            Ok(out) => out,
            Err(err) => panic!("kubectl {args:?}: {err:#}"),
        }
    }

    /// `kubectl apply -f -` of `yaml`; the Output says whether it was accepted.
    pub fn apply(&self, yaml: &str) -> Output {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml))
    }

    /// `kubectl apply -f -` with extra flags (e.g. `--dry-run=server`).
    pub fn apply_args(&self, yaml: &str, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        self.kubectl_stdin(&args, Some(yaml))
    }

    /// A kube client for the lab's admin user.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Installs (or updates) barelb's CRDs from `deploy/crds` and waits until
    /// they are Established. Safe to call from parallel tests.
    pub fn install_crds(&self) {
        let dir = crate::repo_root().join("deploy/crds");
        let dir = dir.to_string_lossy();
        let out = self.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &dir]);
        assert!(out.status.success(), "install CRDs: {}", output_text(&out));
        let out = self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/addresspools.barelb.io",
            "crd/loadbalancerpolicies.barelb.io",
            "crd/bgppeers.barelb.io",
        ]);
        assert!(
            out.status.success(),
            "CRDs not Established: {}",
            output_text(&out)
        );
    }

    /// Deletes `kind/name` (cluster-scoped, or `-n NS` in `extra`) when the
    /// returned guard drops, also when the test fails.
    pub fn delete_on_drop(&self, resource: &str, name: &str, extra: &[&str]) -> DeleteOnDrop {
        DeleteOnDrop {
            lab: self.clone(),
            resource: format!("{resource}/{name}"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            wait: false,
        }
    }

    /// The harness binary (for `kube-lab kubectl` in scripts).
    pub fn harness(&self) -> &Path {
        &self.kube_lab
    }
}

/// Standard output and error of a finished command, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Deletes one object when dropped. See [`Lab::delete_on_drop`].
#[derive(Debug)]
pub struct DeleteOnDrop {
    lab: Lab,
    resource: String,
    extra: Vec<String>,
    wait: bool,
}

impl DeleteOnDrop {
    /// Waits (up to 60 s) until the object is gone: for a guard dropped
    /// before another whose delete depends on it (a Service before its pool).
    pub fn waiting(mut self) -> Self {
        self.wait = true;
        self
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let wait = if self.wait {
            "--wait=true"
        } else {
            "--wait=false"
        };
        let mut args = vec![
            "delete",
            "--ignore-not-found",
            "--timeout=60s",
            wait,
            self.resource.as_str(),
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let _ = self.lab.kubectl(&args);
    }
}
