//! barelb and MetalLB installed on the lab cluster behind one interface, so
//! `scripts/bench-peers` puts both through the same faults on the same clock.
//! Each is installed the way its users install it (barelb's Helm chart;
//! MetalLB's `metallb-native.yaml` from its module source, with images built
//! here by `tests/lab build`, and `--lb-class` so that both can serve one
//! cluster). Both run at once for the failover, apiserver and BGP rows (one
//! fault hits both); for the rows with thousands of Services each runs alone,
//! removed before the other is installed, so neither caches the other's
//! objects or shares the two cores with it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::bulk;
use crate::cluster::Cluster;
use crate::install::{self, Installed, ok};
use crate::lab::output_text;
use crate::repo_root;

/// The load balancers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Barelb,
    MetalLb,
}

/// MetalLB's namespace (its manifests fix it).
pub const METALLB_NS: &str = "metallb-system";

/// The pools every Service of the benchmark names by annotation: the LAN
/// pool (client-reachable, L2), the bulk pool (allocation and memory rows)
/// and the BGP pool (announced to the LAN's router). Both implementations
/// read only their own annotation, so one manifest serves both; each has its
/// own ranges, so both can run on one cluster at once.
pub const LAN_POOL: &str = "peers-lan";
pub const BULK_POOL: &str = "peers-bulk";
pub const BGP_POOL: &str = "peers-bgp";

/// MetalLB's `--lb-class`: it handles only Services of this class, barelb
/// the class-less ones, so both serve one cluster side by side.
pub const METALLB_CLASS: &str = "metallb.io/metallb";

/// The LAN router both announce their BGP pool to (`Cluster::router`).
pub const ROUTER_HOST: u8 = 3;
pub const ROUTER_ASN: u32 = 64501;
pub const NODE_ASN: u32 = 64500;
const ROUTER_PEER: &str = "peers-router";

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::Barelb, Peer::MetalLb];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Barelb => "barelb",
            Peer::MetalLb => "MetalLB",
        }
    }

    /// `spec.loadBalancerClass` of its Services (barelb: none, the default).
    pub fn class(self) -> Option<&'static str> {
        match self {
            Peer::Barelb => None,
            Peer::MetalLb => Some(METALLB_CLASS),
        }
    }

    /// Its ranges: (LAN, bulk, BGP).
    fn ranges(self) -> [(&'static str, &'static str); 3] {
        match self {
            Peer::Barelb => [
                (LAN_POOL, "198.19.0.160-198.19.0.199"),
                (BULK_POOL, "10.200.0.0/18"),
                (BGP_POOL, "10.201.0.0/22"),
            ],
            Peer::MetalLb => [
                (LAN_POOL, "198.19.0.200-198.19.0.239"),
                (BULK_POOL, "10.200.64.0/18"),
                (BGP_POOL, "10.201.4.0/22"),
            ],
        }
    }

    /// Its BGP pool (where the router's routes for its Services fall).
    pub fn bgp_range(self) -> &'static str {
        self.ranges()[2].1
    }

    /// Its BGPPeer for the LAN router (198.19.0.ROUTER_HOST). Applied only
    /// for the BGP row: the router has one session per node address, so
    /// the two implementations' speakers take turns.
    pub fn router_peer(self) -> String {
        let common = format!(
            "peerAddress: 198.19.0.{ROUTER_HOST}, peerASN: {ROUTER_ASN}, myASN: {NODE_ASN}, holdTime: 9s"
        );
        match self {
            Peer::Barelb => format!(
                "apiVersion: barelb.io/v1alpha1\nkind: BGPPeer\n\
                 metadata: {{name: {ROUTER_PEER}, labels: {{peers: bgp}}}}\n\
                 spec: {{{common}, connectRetryTime: 1s}}\n"
            ),
            Peer::MetalLb => format!(
                "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\n\
                 metadata: {{name: {ROUTER_PEER}, namespace: {METALLB_NS}}}\n\
                 spec: {{{common}}}\n"
            ),
        }
    }

    /// `kubectl delete` arguments that remove [`Peer::router_peer`].
    pub fn router_peer_delete(self) -> Vec<&'static str> {
        match self {
            Peer::Barelb => vec!["delete", "bgppeer.barelb.io", ROUTER_PEER],
            Peer::MetalLb => vec![
                "-n",
                METALLB_NS,
                "delete",
                "bgppeer.metallb.io",
                ROUTER_PEER,
            ],
        }
    }

    /// Installs it with its pools and waits until every Pod is Ready.
    pub fn install(self, c: &Cluster) -> Deployed {
        let barelb = match self {
            Peer::Barelb => {
                let installed = install::install_with_helm(c);
                install::apply(c, &barelb_pools(self.ranges()));
                Some(installed)
            }
            Peer::MetalLb => {
                metallb_install(c, self.ranges());
                None
            }
        };
        let d = Deployed {
            peer: self,
            c: c.clone(),
            barelb,
        };
        d.wait_ready();
        d
    }

    /// The speaker's process name (its comm).
    fn speaker_comm(self) -> &'static str {
        match self {
            Peer::Barelb => "barelb-speaker",
            Peer::MetalLb => "speaker",
        }
    }

    /// The controller's process name.
    fn controller_comm(self) -> &'static str {
        match self {
            Peer::Barelb => "barelb-operator",
            Peer::MetalLb => "controller",
        }
    }

    /// (namespace, Deployment, DaemonSet, speaker Pod label).
    pub(crate) fn objects(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Peer::Barelb => (
                install::NS,
                "barelb-operator",
                "barelb-speaker",
                "app.kubernetes.io/name=barelb-speaker",
            ),
            Peer::MetalLb => (METALLB_NS, "controller", "speaker", "component=speaker"),
        }
    }
}

/// The pools as barelb AddressPools: LAN and bulk announced on the nodes'
/// LAN leg, BGP to the peers labelled `peers: bgp` (none until the BGP row).
fn barelb_pools(ranges: [(&str, &str); 3]) -> String {
    let [lan, bulk, bgp] = ranges;
    let l2 = |(name, range): (&str, &str)| {
        format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {name}}}\n\
             spec: {{addresses: [{range}], announce: {{mode: L2, l2: {{interfaces: [eth0]}}}}}}\n"
        )
    };
    let (name, range) = bgp;
    format!(
        "{}---\n{}---\n\
         apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {name}}}\n\
         spec: {{addresses: [{range}], announce: {{mode: BGP, bgp: {{peerSelector: {{matchLabels: {{peers: bgp}}}}}}}}}}\n",
        l2(lan),
        l2(bulk)
    )
}

/// The same as MetalLB IPAddressPools with L2Advertisements, and a
/// BGPAdvertisement for the BGP pool (no BGPPeer until the BGP row).
fn metallb_pools(ranges: [(&str, &str); 3]) -> String {
    let pool = |(name, range): (&str, &str)| {
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {{name: {name}, namespace: {METALLB_NS}}}\nspec: {{addresses: [{range}]}}\n---\n"
        )
    };
    let [lan, bulk, bgp] = ranges;
    let mut yaml: String = ranges.iter().map(|r| pool(*r)).collect();
    for (name, _) in [lan, bulk] {
        yaml += &format!(
            "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n\
             metadata: {{name: {name}, namespace: {METALLB_NS}}}\n\
             spec: {{ipAddressPools: [{name}], interfaces: [eth0]}}\n---\n"
        );
    }
    yaml += &format!(
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\n\
         metadata: {{name: {0}, namespace: {METALLB_NS}}}\nspec: {{ipAddressPools: [{0}]}}\n",
        bgp.0
    );
    yaml
}

/// The annotations that put a Service in `pool` with either implementation.
pub fn pool_annotations(pool: &str) -> BTreeMap<String, String> {
    ["barelb.io/pool", "metallb.io/address-pool"]
        .iter()
        .map(|k| (k.to_string(), pool.to_string()))
        .collect()
}

fn metallb_manifest() -> String {
    repo_root()
        .join("target/metallb/metallb-native.yaml")
        .display()
        .to_string()
}

/// metallb-native.yaml with `--lb-class` on the controller and the speaker
/// (their Helm chart's `loadBalancerClass` does the same), so MetalLB
/// leaves barelb's Services alone and both serve one cluster at once.
fn metallb_manifest_with_class() -> String {
    let yaml = std::fs::read_to_string(metallb_manifest())
        .unwrap_or_else(|e| panic!("{}: {e} (tests/lab build makes it)", metallb_manifest()));
    let port = "        - --port=7472\n";
    assert_eq!(
        yaml.matches(port).count(),
        2,
        "metallb-native.yaml: expected the controller's and the speaker's --port"
    );
    yaml.replace(
        port,
        &format!("{port}        - --lb-class={METALLB_CLASS}\n"),
    )
}

/// MetalLB as its docs say: its images into the nodes (where a registry
/// would serve them), `kubectl apply -f metallb-native.yaml`, then the
/// pools once its webhook answers. Default settings: memberlist on.
fn metallb_install(c: &Cluster, ranges: [(&str, &str); 3]) {
    let dir = repo_root().join("target/metallb");
    let archives: Vec<String> = ["controller.tar", "speaker.tar"]
        .iter()
        .map(|a| dir.join(a).display().to_string())
        .collect();
    let out = std::process::Command::new(repo_root().join("tests/lab"))
        .arg("load-images")
        .args(&archives)
        .env("BARELB_LAB_DIR", crate::cluster::cluster_dir())
        .output()
        .expect("run tests/lab load-images");
    ok(out, "load MetalLB's images (tests/lab build makes them)");
    ok(
        c.lab.apply(&metallb_manifest_with_class()),
        "kubectl apply -f metallb-native.yaml (with --lb-class)",
    );
    ok(
        c.lab.kubectl(&[
            "-n",
            METALLB_NS,
            "rollout",
            "status",
            "deployment/controller",
            "--timeout=180s",
        ]),
        "MetalLB controller rollout",
    );
    // The webhook serves once the controller has made its certificate.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = c.lab.apply(&metallb_pools(ranges));
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "MetalLB pools: {}",
            output_text(&out)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// An installed implementation; removed on drop (also when a run fails).
#[derive(Debug)]
pub struct Deployed {
    pub peer: Peer,
    c: Cluster,
    barelb: Option<Installed>,
}

impl Deployed {
    /// Waits until the controller Deployment and one speaker per node are
    /// Ready.
    pub fn wait_ready(&self) {
        let (ns, deploy, ds, _) = self.peer.objects();
        for what in [format!("deployment/{deploy}"), format!("daemonset/{ds}")] {
            let out = self
                .c
                .lab
                .kubectl(&["-n", ns, "rollout", "status", &what, "--timeout=180s"]);
            assert!(
                out.status.success(),
                "{}: rollout of {what}: {}",
                self.peer.name(),
                output_text(&out)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while (1..=self.c.nodes).any(|i| self.speaker_pid(i).is_none()) {
            assert!(
                Instant::now() < deadline,
                "{}: a speaker process is missing",
                self.peer.name()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        if self.peer == Peer::Barelb {
            self.wait_admitting();
        }
    }

    /// Waits until barelb's webhook answers for a Service of its class (a
    /// server-side dry run, which admission reviews). A Ready operator Pod
    /// is not yet an endpoint the apiserver knows: after every operator was
    /// away, creates are refused ("no endpoints available") for a moment.
    fn wait_admitting(&self) {
        let probe = r#"{"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "peers-admission-probe", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}"#;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.c.lab.apply_args(probe, &["--dry-run=server"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "barelb's webhook does not answer: {}",
                output_text(&out)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The PID of the speaker on node `i`, if one runs.
    pub fn speaker_pid(&self, i: usize) -> Option<u32> {
        let ns = std::fs::metadata(format!("/run/netns/{}", self.c.node_ns(i)))
            .ok()?
            .ino();
        bulk::pids_named(self.peer.speaker_comm())
            .into_iter()
            .find(|pid| net_ns(*pid) == Some(ns))
    }

    /// The node whose controller decides (barelb: the leader's; MetalLB:
    /// its controller's, which allocates but plays no part in failover).
    pub fn controller_node(&self) -> Option<usize> {
        let (ns, _, _, _) = self.peer.objects();
        let pod = match self.peer {
            Peer::Barelb => install::leader_pod(&self.c)?,
            Peer::MetalLb => {
                let pods = self
                    .c
                    .json(&["-n", ns, "get", "pods", "-l", "component=controller"]);
                pods["items"].as_array()?.first()?.clone()
            }
        };
        crate::cluster::node_index(&pod)
    }

    /// Every speaker's PID.
    pub fn speaker_pids(&self) -> Vec<u32> {
        (1..=self.c.nodes)
            .filter_map(|i| self.speaker_pid(i))
            .collect()
    }

    /// The controller processes (barelb: every operator replica).
    pub fn controller_pids(&self) -> Vec<u32> {
        bulk::pids_named(self.peer.controller_comm())
    }

    /// Scales the controller Deployment to `replicas` (0: no controller).
    pub fn scale_controller(&self, replicas: usize) {
        let (ns, deploy, _, _) = self.peer.objects();
        let r = format!("--replicas={replicas}");
        ok(
            self.c
                .lab
                .kubectl(&["-n", ns, "scale", &format!("deployment/{deploy}"), &r]),
            "scale the controller",
        );
        if replicas == 0 {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !self.controller_pids().is_empty() {
                assert!(Instant::now() < deadline, "controller did not stop");
                std::thread::sleep(Duration::from_millis(200));
            }
            if self.peer == Peer::Barelb {
                self.admit_without_operator();
            }
        }
    }

    /// barelb reviews Services with failurePolicy Fail, so with no operator
    /// no Service could be created: set Ignore until the operator starts
    /// and applies its own registration again (MetalLB's webhook reviews
    /// only its own kinds).
    fn admit_without_operator(&self) {
        let hooks = self
            .c
            .json(&["get", "validatingwebhookconfiguration", "barelb"]);
        let n = hooks["webhooks"].as_array().map_or(0, Vec::len);
        let patch: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"op":"replace","path":"/webhooks/{i}/failurePolicy","value":"Ignore"}}"#
                )
            })
            .collect();
        ok(
            self.c.lab.kubectl(&[
                "patch",
                "validatingwebhookconfiguration",
                "barelb",
                "--type=json",
                "-p",
                &format!("[{}]", patch.join(",")),
            ]),
            "barelb's webhook: failurePolicy Ignore while no operator runs",
        );
    }

    /// Its default controller replica count (barelb's chart: 2, for HA).
    pub fn default_replicas(&self) -> usize {
        match self.peer {
            Peer::Barelb => 2,
            Peer::MetalLb => 1,
        }
    }

    /// Deletes the speaker Pod of node `i` (the DaemonSet makes a new one:
    /// a crashed container's restart back-off does not carry over).
    pub fn replace_speaker(&self, i: usize) {
        let (ns, _, _, label) = self.peer.objects();
        let field = format!("spec.nodeName=node-{i}");
        ok(
            self.c.lab.kubectl(&[
                "-n",
                ns,
                "delete",
                "pod",
                "-l",
                label,
                "--field-selector",
                &field,
                "--wait=false",
            ]),
            "delete a speaker Pod",
        );
    }

    /// Deletes every controller Pod (a restart; the Deployment makes new ones).
    pub fn restart_controller(&self) {
        let (ns, deploy, _, _) = self.peer.objects();
        let label = match self.peer {
            Peer::Barelb => "app.kubernetes.io/name=barelb-operator",
            Peer::MetalLb => "component=controller",
        };
        ok(
            self.c
                .lab
                .kubectl(&["-n", ns, "delete", "pod", "-l", label, "--wait=false"]),
            &format!("delete the {deploy} Pods"),
        );
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        match self.peer {
            Peer::Barelb => {
                for p in [LAN_POOL, BULK_POOL, BGP_POOL] {
                    let _ = self
                        .c
                        .lab
                        .kubectl(&["delete", "addresspool", p, "--ignore-not-found"]);
                }
                let mut args = Peer::Barelb.router_peer_delete();
                args.push("--ignore-not-found");
                let _ = self.c.lab.kubectl(&args);
                drop(self.barelb.take());
            }
            Peer::MetalLb => {
                let _ = self.c.lab.kubectl(&[
                    "delete",
                    "-f",
                    &metallb_manifest(),
                    "--ignore-not-found",
                    "--wait=true",
                    "--timeout=120s",
                ]);
            }
        }
    }
}

/// The inode of `pid`'s network namespace.
fn net_ns(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}
