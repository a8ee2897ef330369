//! Throwaway network topologies in network namespaces.
//!
//! A [`Topology`] is a bridge inside its own "lan" namespace and one namespace
//! per host, each joined to the bridge by a veth pair. Addresses come from
//! ranges that exist only inside the lab (198.18.0.0/24, RFC 2544's benchmark
//! range, and 2001:db8:18::/64, documentation space), so nothing a test sends
//! can reach a real network. Names carry the creating process id, so parallel
//! tests never collide, and [`sweep_stale`] can remove what a killed test left.
//! Everything is removed on drop, also when the test panics.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// Prefix of every namespace the lab creates: `blt-<pid>-<n>-<role>`.
pub const NETNS_PREFIX: &str = "blt-";

/// Prefix length of the lab's IPv4 subnet.
pub const LAN_PREFIX_V4: u8 = 24;
/// Prefix length of the lab's IPv6 subnet.
pub const LAN_PREFIX_V6: u8 = 64;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One network namespace, deleted (with every process left in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `blt-<pid>-<n>-<role>`.
    pub fn new(role: &str) -> anyhow::Result<Self> {
        require_root()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `args` inside the namespace; fails with its stderr on a non-zero exit.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        let (program, rest) = args.split_first().context("empty command")?;
        let out = run(self.command(program).args(rest))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `args` inside the namespace and returns its output whatever the exit code.
    pub fn exec_output(&self, args: &[&str]) -> anyhow::Result<Output> {
        let (program, rest) = args.split_first().context("empty command")?;
        self.command(program)
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {args:?} in {}", self.name))
    }

    /// Starts `args` inside the namespace; the process is killed when the
    /// returned guard drops.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<Process> {
        let (program, rest) = args.split_first().context("empty command")?;
        let child = self
            .command(program)
            .args(rest)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {args:?} in {}", self.name))?;
        Ok(Process { child })
    }

    /// Like [`Netns::spawn`], with standard output and error going to `log`.
    pub fn spawn_logged(&self, args: &[&str], log: &std::path::Path) -> anyhow::Result<Process> {
        let (program, rest) = args.split_first().context("empty command")?;
        let file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = self
            .command(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawn {args:?} in {}", self.name))?;
        Ok(Process { child })
    }

    /// `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run(Command::new("ip").arg("-n").arg(&self.name).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.name);
    }
}

/// A process started in a namespace; killed and reaped on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks it to stop (SIGTERM) and waits up to 5 s, then kills it.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.kill();
    }

    /// Kills it now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl From<Child> for Process {
    /// Takes charge of a child started elsewhere (killed on drop).
    fn from(child: Child) -> Self {
        Process { child }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A host on the lab's LAN.
#[derive(Debug)]
pub struct Host {
    /// Role given at build time, e.g. `node1`, `client`, `router`.
    pub role: String,
    /// The host's namespace.
    pub ns: Netns,
    /// Its interface on the LAN (inside `ns`).
    pub ifname: String,
    /// Its IPv4 address (prefix [`LAN_PREFIX_V4`]).
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address (prefix [`LAN_PREFIX_V6`]).
    pub ipv6: Ipv6Addr,
    /// Its interface MAC, `02:42:b1:00:00:NN`.
    pub mac: String,
}

/// A bridge in a "lan" namespace with hosts attached.
#[derive(Debug)]
pub struct Topology {
    /// Hosts in build order. Declared before `lan` so they are removed first.
    pub hosts: Vec<Host>,
    /// The namespace holding bridge `br0`.
    pub lan: Netns,
}

impl Topology {
    /// Builds a LAN with one host per role. Host `i` gets 198.18.0.(10+i),
    /// 2001:db8:18::(10+i) and MAC 02:42:b1:00:00:(10+i).
    pub fn build(roles: &[&str]) -> anyhow::Result<Self> {
        if roles.len() > 200 {
            bail!("a lab LAN holds at most 200 hosts");
        }
        sweep_stale();
        let lan = Netns::new("lan")?;
        lan.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        lan.ip(&["link", "set", "br0", "up"])?;
        let mut topo = Topology {
            hosts: Vec::new(),
            lan,
        };
        for (i, role) in roles.iter().enumerate() {
            let host = topo.add_host(i, role)?;
            topo.hosts.push(host);
        }
        Ok(topo)
    }

    fn add_host(&self, i: usize, role: &str) -> anyhow::Result<Host> {
        let ns = Netns::new(role)?;
        let octet = u8::try_from(10 + i).context("too many hosts")?;
        let port = format!("p{i}");
        self.lan.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ])?;
        self.lan
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        let mac = format!("02:42:b1:00:00:{octet:02x}");
        let ipv4 = Ipv4Addr::new(198, 18, 0, octet);
        let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, u16::from(octet));
        ns.ip(&["link", "set", "eth0", "address", &mac])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{ipv4}/{LAN_PREFIX_V4}"),
            "dev",
            "eth0",
        ])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{ipv6}/{LAN_PREFIX_V6}"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        Ok(Host {
            role: role.to_string(),
            ns,
            ifname: "eth0".into(),
            ipv4,
            ipv6,
            mac,
        })
    }

    /// The host built with `role`.
    pub fn host(&self, role: &str) -> &Host {
        match self.hosts.iter().find(|h| h.role == role) {
            Some(h) => h,
            None => panic!("no host {role:?} in this topology"),
        }
    }
}

/// Removes lab namespaces whose creating process has exited (a test killed
/// before its drop ran). Namespaces of live processes are left alone.
pub fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(name);
        }
    }
}

fn delete_netns(name: &str) {
    // Processes left inside would keep the namespace alive: kill them by PID.
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

fn require_root() -> anyhow::Result<()> {
    let out = Command::new("id").arg("-u").output().context("run id -u")?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!("the network lab needs root (CAP_NET_ADMIN) to create namespaces");
    }
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// The next hops of `prefix` in namespace `ns`'s kernel table, sorted
/// (empty: no route) — one or several (`nexthop via …` with ECMP).
pub fn kernel_next_hops(ns: &str, prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "show", prefix])
        .output()
        .expect("run ip route");
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut hops: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    hops.sort();
    hops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns_exists(name: &str) -> bool {
        std::path::Path::new("/run/netns").join(name).exists()
    }

    #[test]
    fn hosts_reach_each_other_over_v4_and_v6_and_vanish_on_drop() {
        let topo = Topology::build(&["a", "b"]).expect("build topology");
        let (a, b) = (topo.host("a"), topo.host("b"));
        a.ns.exec(&["ping", "-c1", "-W2", &b.ipv4.to_string()])
            .expect("ping v4");
        a.ns.exec(&["ping", "-6", "-c1", "-W2", &b.ipv6.to_string()])
            .expect("ping v6");
        let link = b.ns.ip(&["-j", "link", "show", "eth0"]).expect("link");
        assert!(link.contains(&b.mac), "{link}");
        let names: Vec<String> = topo
            .hosts
            .iter()
            .map(|h| h.ns.name().to_string())
            .chain([topo.lan.name().to_string()])
            .collect();
        assert!(names.iter().all(|n| netns_exists(n)));
        drop(topo);
        assert!(
            names.iter().all(|n| !netns_exists(n)),
            "namespaces left: {names:?}"
        );
    }

    #[test]
    fn cleanup_runs_when_the_test_panics_and_kills_processes() {
        let names = std::sync::Mutex::new(Vec::new());
        let result = std::panic::catch_unwind(|| {
            let topo = Topology::build(&["solo"]).expect("build topology");
            let host = topo.host("solo");
            let sleeper = host.ns.spawn(&["sleep", "600"]).expect("spawn");
            names
                .lock()
                .expect("lock")
                .push((host.ns.name().to_string(), sleeper.pid()));
            std::mem::forget(sleeper); // leave it running: the namespace drop must kill it
            panic!("test failure inside the topology");
        });
        assert!(result.is_err());
        for (ns, pid) in names.into_inner().expect("lock") {
            assert!(!netns_exists(&ns), "{ns} still exists");
            // Reaped or zombie: either way no longer running in the namespace.
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                state.is_empty() || state.contains(") Z"),
                "sleep {pid} still running: {state}"
            );
        }
    }

    #[test]
    fn parallel_topologies_do_not_collide() {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    Topology::build(&["x", "y"]).map(|t| t.lan.name().to_string())
                })
            })
            .collect();
        let mut names: Vec<String> = handles
            .into_iter()
            .map(|h| h.join().expect("join").expect("build"))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 3);
    }
}
