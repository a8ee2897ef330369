//! A real Argo CD against the lab (test tooling, built by `tests/lab build`
//! from tests/argocd-lab): its application controller and repo-server as
//! processes, with Debian's redis-server, in a namespace of their own, and
//! pool repos served by `git daemon` on loopback. Everything it started is
//! stopped by PID, and its namespace deleted, on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lab::{Lab, output_text};
use crate::{repo_root, unique_name};

/// The Argo CD binary and its CRDs, as `tests/lab build` leaves them.
fn tooling() -> PathBuf {
    repo_root().join("target/argocd-lab")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// One running Argo CD.
#[derive(Debug)]
pub struct ArgoCd {
    pub lab: Lab,
    /// The namespace its controller works in (Applications go here).
    pub ns: String,
    dir: PathBuf,
    git_port: u16,
    children: Vec<(String, Child)>,
}

/// Fails the test with the fix when a tool is missing: never skipped.
fn require(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (tests/lab build builds Argo CD)",
        path.display()
    );
}

impl ArgoCd {
    /// Installs Argo CD's CRDs, its settings (barelb's health checks
    /// included) and starts redis, the repo-server, the controller and a git
    /// daemon.
    pub fn start(lab: &Lab) -> ArgoCd {
        let bin = tooling().join("argocd");
        require(&bin);
        let ns = unique_name("argocd");
        let dir = crate::lab::lab_dir().join("argocd").join(&ns);
        for sub in ["home", "tmp", "git", "tls", "ssh", "gnupg"] {
            std::fs::create_dir_all(dir.join(sub)).expect("argocd directories");
        }
        let mut argo = ArgoCd {
            lab: lab.clone(),
            ns,
            git_port: free_port(),
            dir,
            children: Vec::new(),
        };
        argo.install();
        let redis = free_port();
        argo.spawn(
            "redis",
            Command::new("redis-server").args([
                "--port",
                &redis.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]),
        );
        let redis = format!("127.0.0.1:{redis}");
        let repo_port = free_port();
        let mut repo = argo.argocd("argocd-repo-server");
        repo.args(["--disable-tls", "--address", "127.0.0.1", "--port"])
            .arg(repo_port.to_string())
            .args(["--metrics-address", "127.0.0.1", "--metrics-port"])
            .arg(free_port().to_string())
            .args(["--redis", &redis]);
        argo.spawn("repo-server", &mut repo);
        let mut controller = argo.argocd("argocd-application-controller");
        controller
            .env("KUBECONFIG", &lab.kubeconfig)
            // Else https://kubernetes.default.svc goes through in-cluster config.
            .env("ARGOCD_FAKE_IN_CLUSTER", "true")
            .args(["--namespace", &argo.ns, "--repo-server"])
            .arg(format!("127.0.0.1:{repo_port}"))
            .args(["--repo-server-plaintext", "--redis", &redis])
            .args(["--metrics-port"])
            .arg(free_port().to_string())
            .args(["--app-resync", "20", "--self-heal-timeout-seconds", "2"])
            // v3 keeps resource health out of the Application by default;
            // tests read it there.
            .arg("--persist-resource-health=true");
        argo.spawn("application-controller", &mut controller);
        let git_root = argo.dir.join("git");
        let mut git = Command::new("git");
        git.args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={}", argo.git_port))
        .arg(format!("--base-path={}", git_root.display()))
        .arg(&git_root);
        argo.spawn("git-daemon", &mut git);
        argo
    }

    /// CRDs (server-side: the Application CRD is over the client-side
    /// annotation limit), the namespace, argocd-cm with barelb's health
    /// checks, argocd-secret and the `default` AppProject (argocd-server,
    /// which is not run, would create it).
    fn install(&self) {
        let crds = tooling().join("crds");
        require(&crds.join("application-crd.yaml"));
        let crds = crds.to_string_lossy().to_string();
        self.ok(
            &["apply", "--server-side", "--force-conflicts", "-f", &crds],
            None,
        );
        // Right after creation a CRD has no conditions yet, and `kubectl
        // wait` fails rather than waits: ask again until Established.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.lab.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=10s",
                "crd/applications.argoproj.io",
                "crd/appprojects.argoproj.io",
            ]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Argo CD's CRDs not Established: {}",
                output_text(&out)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.ok(&["create", "namespace", &self.ns], None);
        let health = repo_root().join("gitops-examples/argocd/argocd-cm-health.yaml");
        let health = std::fs::read_to_string(&health).expect("argocd-cm-health.yaml");
        let mut cm: Value = serde_yaml::from_str(&health).expect("argocd-cm-health.yaml is YAML");
        cm["metadata"]["namespace"] = json!(self.ns);
        cm["data"]["timeout.reconciliation"] = json!("10s");
        let part_of = json!({"app.kubernetes.io/part-of": "argocd"});
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": self.ns, "labels": part_of}});
        let project = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "default", "namespace": self.ns},
            "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                     "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}});
        for obj in [cm, secret, project] {
            self.ok(&["apply", "-f", "-"], Some(&obj.to_string()));
        }
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) {
        let out = self.lab.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            output_text(&out)
        );
    }

    /// The Argo CD binary as `name`, with its data directories here.
    fn argocd(&self, name: &str) -> Command {
        let mut cmd = Command::new(tooling().join("argocd"));
        let path = format!(
            "{}:{}:{}",
            tooling().display(),
            repo_root().join("target/kube-lab").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("ARGOCD_BINARY_NAME", name)
            .env("PATH", path)
            .env("HOME", self.dir.join("home"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env("ARGOCD_GPG_ENABLED", "false")
            .env("ARGOCD_TLS_DATA_PATH", self.dir.join("tls"))
            .env("ARGOCD_SSH_DATA_PATH", self.dir.join("ssh"))
            .env("ARGOCD_GNUPGHOME", self.dir.join("gnupg"));
        cmd
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    /// Resident memory of each component now, in MiB (for benchmarks).
    pub fn rss_mib(&self) -> Vec<(String, u64)> {
        self.children
            .iter()
            .map(|(name, child)| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                    .unwrap_or_default();
                let kib: u64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                (name.clone(), kib / 1024)
            })
            .collect()
    }

    /// The last lines of one component's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A new git repository served at `git://127.0.0.1:PORT/NAME.git`.
    pub fn repo(&self, name: &str) -> GitRepo {
        let bare = self.dir.join("git").join(format!("{name}.git"));
        let work = self.dir.join(format!("work-{name}"));
        git(
            &self.dir,
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                &bare.to_string_lossy(),
            ],
        );
        git(
            &self.dir,
            &["init", "-q", "-b", "main", &work.to_string_lossy()],
        );
        git(&work, &["remote", "add", "origin", &bare.to_string_lossy()]);
        GitRepo {
            work,
            url: format!("git://127.0.0.1:{}/{name}.git", self.git_port),
        }
    }

    /// Creates an Application of `spec` named `name` in Argo CD's namespace.
    pub fn application(&self, name: &str, spec: Value) {
        let app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": self.ns}, "spec": spec});
        self.ok(&["apply", "-f", "-"], Some(&app.to_string()));
    }

    /// The Application's status.
    pub fn app_status(&self, name: &str) -> Value {
        let out = self
            .lab
            .kubectl(&["-n", &self.ns, "get", "application", name, "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)["status"].clone()
    }

    /// The Application's status once `pred` holds; panics after `secs`
    /// with the status and the controller's last log lines.
    pub fn wait_app(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let st = self.app_status(name);
            if pred(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "Application {name}: not {what} in {secs} s; status: {st}\ncontroller log:\n{}",
                self.log_tail("application-controller")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Asks Argo CD to re-read git now (as the UI's hard refresh does).
    pub fn refresh(&self, name: &str) {
        self.ok(
            &[
                "-n",
                &self.ns,
                "annotate",
                "--overwrite",
                "application",
                name,
                "argocd.argoproj.io/refresh=hard",
            ],
            None,
        );
    }
}

impl Drop for ArgoCd {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = Command::new("kill").arg(child.id().to_string()).output();
        }
        for (_, child) in self.children.iter_mut() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Applications carry no finalizer here: deleting the namespace
        // leaves what they synced, which the test deletes itself.
        let _ = self.lab.kubectl(&[
            "delete",
            "namespace",
            &self.ns,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// A pool repo: commits go to a bare repository the git daemon serves.
#[derive(Debug)]
pub struct GitRepo {
    work: PathBuf,
    pub url: String,
}

impl GitRepo {
    /// Copies the directory `src` to `dest` in the work tree (committed by
    /// the next [`GitRepo::commit`]).
    pub fn add_tree(&self, src: &Path, dest: &str) {
        let to = self.work.join(dest);
        std::fs::create_dir_all(&to).expect("repo directory");
        for entry in std::fs::read_dir(src).expect("read source directory") {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.file_type().expect("file type").is_dir() {
                self.add_tree(&entry.path(), &format!("{dest}/{name}"));
            } else {
                std::fs::copy(entry.path(), to.join(&name)).expect("copy into the repo");
            }
        }
    }

    /// Writes `files` (path, content; empty content deletes), commits and
    /// pushes; returns the commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            if content.is_empty() {
                let _ = std::fs::remove_file(&p);
                continue;
            }
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("repo directory");
            }
            std::fs::write(&p, content).expect("write repo file");
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &[
                "-c",
                "user.name=barelb test",
                "-c",
                "user.email=test@barelb.invalid",
                "commit",
                "-q",
                "-m",
                message,
            ],
        );
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_string()
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Whether an Application's status is Synced and Healthy.
pub fn synced_healthy(st: &Value) -> bool {
    st["sync"]["status"] == "Synced" && st["health"]["status"] == "Healthy"
}

/// Per-resource messages of an Application's last sync operation.
pub fn sync_messages(st: &Value) -> Vec<String> {
    st["operationState"]["syncResult"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"].as_str().map(str::to_string))
        .collect()
}

/// Argo CD's health (status, message) of the resource `kind/name` in an
/// Application's status.
pub fn health_of(st: &Value, kind: &str, name: &str) -> (String, String) {
    let r = st["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == kind && r["name"] == name);
    let field = |f: &str| {
        r.and_then(|r| r["health"][f].as_str())
            .unwrap_or_default()
            .to_string()
    };
    (field("status"), field("message"))
}
