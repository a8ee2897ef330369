//! Real BGP routers from the distribution — BIRD 2, FRR bgpd, GoBGP — run
//! as processes inside a lab host's namespace, configured to peer with
//! given neighbours and to import everything they are sent. Their RIBs are
//! read back in one normalized shape so a test can compare routers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::netlab::{Host, Netns, Process};

mod bfd;
use bfd::frr_daemon;
pub use bfd::{BfdTimers, BfdView};

/// Which router software.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bird,
    Frr,
    Gobgp,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Bird, Kind::Frr, Kind::Gobgp];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Bird => "bird",
            Kind::Frr => "frr",
            Kind::Gobgp => "gobgp",
        }
    }
}

/// A neighbour the router accepts a session from.
#[derive(Clone, Debug)]
pub struct Neighbor {
    pub addr: IpAddr,
    pub asn: u32,
    pub password: Option<String>,
}

/// One route as a router holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    pub next_hop: String,
    pub as_path: Vec<u32>,
    /// `ASN:VALUE`.
    pub communities: Vec<String>,
    /// `A:B:C`.
    pub large_communities: Vec<String>,
    pub local_pref: Option<u32>,
}

/// How a router runs beyond its sessions.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouterOptions {
    pub bfd: Option<BfdTimers>,
    pub forwarding: bool,
    /// eBGP multihop (TTL 2) sessions, and with `bfd` multihop BFD (RFC
    /// 5883); BIRD only.
    pub multihop: bool,
}

/// A running router.
#[derive(Debug)]
pub struct Router {
    pub kind: Kind,
    pub asn: u32,
    pub router_id: String,
    pub neighbors: Vec<Neighbor>,
    pub bfd: Option<BfdTimers>,
    pub forwarding: bool,
    pub multihop: bool,
    ns: String,
    dir: PathBuf,
    process: Option<Process>,
    /// FRR with BFD or forwarding: zebra (and bfdd) beside bgpd.
    helpers: Vec<Process>,
}

fn ns_command(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

impl Router {
    /// Starts `kind` in `host`'s namespace with AS `asn`, hold time 3 s and
    /// 1 s retries, importing IPv4 and IPv6 unicast from `neighbors`.
    pub fn start(
        kind: Kind,
        host: &Host,
        asn: u32,
        neighbors: Vec<Neighbor>,
    ) -> anyhow::Result<Self> {
        Self::start_with(kind, host, asn, neighbors, RouterOptions::default())
    }

    /// The same, with `opts`: BFD on every session, and/or forwarding
    /// (what it learns installed in its kernel table, ECMP across
    /// neighbours, IP forwarding on: clients route through it).
    pub fn start_with(
        kind: Kind,
        host: &Host,
        asn: u32,
        neighbors: Vec<Neighbor>,
        opts: RouterOptions,
    ) -> anyhow::Result<Self> {
        let bfd = opts.bfd;
        host.ns.ip(&["link", "set", "lo", "up"])?;
        let dir = crate::lab::lab_dir().join("routers").join(format!(
            "{}-{}",
            host.ns.name(),
            kind.name()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut r = Router {
            kind,
            asn,
            router_id: host.ipv4.to_string(),
            neighbors,
            bfd,
            forwarding: opts.forwarding,
            multihop: opts.multihop,
            ns: host.ns.name().to_string(),
            dir,
            process: None,
            helpers: Vec::new(),
        };
        r.write_config()?;
        r.launch(&host.ns)?;
        Ok(r)
    }

    /// Where its log goes.
    pub fn log(&self) -> PathBuf {
        self.dir.join("router.log")
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let mut c = String::new();
        match self.kind {
            Kind::Bird => {
                c += &format!("router id {};\nprotocol device {{}}\n", self.router_id);
                c += "filter gshut { if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }\n";
                if self.forwarding {
                    c += "protocol kernel { ipv4 { export all; }; merge paths on; }\n\
                          protocol kernel { ipv6 { export all; }; merge paths on; }\n";
                }
                if let Some(b) = self.bfd {
                    let timers = format!(
                        "min rx interval {0} ms; min tx interval {0} ms; multiplier {1};",
                        b.interval_ms, b.multiplier
                    );
                    c += &format!(
                        "protocol bfd {{ interface \"*\" {{ {timers} }}; multihop {{ {timers} }}; }}\n"
                    );
                }
                if self.multihop {
                    c += "protocol direct { ipv4; ipv6; }\n";
                }
                // Multihop BFD needs the session's local address spelt out.
                let (hops, local) = if self.multihop {
                    ("multihop 2", self.router_id.as_str())
                } else {
                    ("direct", "")
                };
                for (i, n) in self.neighbors.iter().enumerate() {
                    c += &format!(
                        "protocol bgp barelb{i} {{\n  local {local} as {};\n  neighbor {} as {};\n  \
                         {hops}; hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 5;\n",
                        self.asn, n.addr, n.asn
                    );
                    if let Some(p) = &n.password {
                        c += &format!("  password \"{p}\";\n");
                    }
                    if self.bfd.is_some() {
                        c += "  bfd on;\n";
                    }
                    // RFC 8326 §4.2: a route marked GRACEFUL_SHUTDOWN gets
                    // the lowest preference (FRR does this on its own).
                    // Multihop next hops resolve through the connected
                    // routes (`protocol direct`), not the interface.
                    let gw = if self.multihop { "recursive" } else { "direct" };
                    c += &format!(
                        "  ipv4 {{ import filter gshut; export none; gateway {gw}; }};\n  \
                         ipv6 {{ import filter gshut; export none; gateway {gw}; }};\n}}\n"
                    );
                }
                std::fs::write(self.dir.join("bird.conf"), c)?;
            }
            Kind::Frr | Kind::Gobgp if self.multihop => {
                bail!("multihop in the lab: BIRD only, not {}", self.kind.name());
            }
            Kind::Gobgp if self.bfd.is_some() => {
                bail!("GoBGP 3.10 has no BFD");
            }
            Kind::Frr => {
                c += &format!(
                    "frr defaults traditional\nhostname r\nlog stdout informational\n\
                     router bgp {}\n bgp router-id {}\n no bgp ebgp-requires-policy\n",
                    self.asn, self.router_id
                );
                for n in &self.neighbors {
                    c += &format!(
                        " neighbor {0} remote-as {1}\n neighbor {0} timers 1 3\n neighbor {0} timers connect 1\n",
                        n.addr, n.asn
                    );
                    if let Some(p) = &n.password {
                        c += &format!(" neighbor {} password {p}\n", n.addr);
                    }
                    if self.bfd.is_some() {
                        c += &format!(" neighbor {} bfd\n", n.addr);
                    }
                }
                for af in ["ipv4", "ipv6"] {
                    c += &format!(" address-family {af} unicast\n");
                    if self.forwarding {
                        c += "  maximum-paths 8\n";
                    }
                    for n in &self.neighbors {
                        c += &format!("  neighbor {} activate\n", n.addr);
                    }
                    c += " exit-address-family\n";
                }
                std::fs::write(self.dir.join("bgpd.conf"), c)?;
                if self.bfd.is_some() || self.forwarding {
                    std::fs::write(self.dir.join("zebra.conf"), "log stdout informational\n")?;
                }
                if let Some(b) = self.bfd {
                    let mut bfd = String::from("bfd\n");
                    for n in &self.neighbors {
                        bfd += &format!(
                            " peer {}\n  receive-interval {1}\n  transmit-interval {1}\n  detect-multiplier {2}\n exit\n",
                            n.addr, b.interval_ms, b.multiplier
                        );
                    }
                    std::fs::write(self.dir.join("bfdd.conf"), bfd + "exit\n")?;
                }
            }
            Kind::Gobgp => {
                c += &format!(
                    "[global.config]\n  as = {}\n  router-id = \"{}\"\n",
                    self.asn, self.router_id
                );
                for n in &self.neighbors {
                    c += &format!(
                        "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n",
                        n.addr, n.asn
                    );
                    if let Some(p) = &n.password {
                        c += &format!("    auth-password = \"{p}\"\n");
                    }
                    c += "  [neighbors.timers.config]\n    hold-time = 3\n    keepalive-interval = 1\n    connect-retry = 1\n";
                    for af in ["ipv4-unicast", "ipv6-unicast"] {
                        c += &format!(
                            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{af}\"\n"
                        );
                    }
                }
                std::fs::write(self.dir.join("gobgp.toml"), c)?;
            }
        }
        Ok(())
    }

    fn launch(&mut self, ns: &Netns) -> anyhow::Result<()> {
        let d = self.dir.display().to_string();
        if self.forwarding {
            // ECMP by flow (layer 4): each new connection is hashed afresh,
            // as on a router spreading many clients over the nodes.
            ns.exec(&[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.fib_multipath_hash_policy=1",
                "net.ipv6.fib_multipath_hash_policy=1",
            ])?;
        }
        let args: Vec<String> = match self.kind {
            Kind::Bird => vec![
                "bird".into(),
                "-f".into(),
                "-c".into(),
                format!("{d}/bird.conf"),
                "-s".into(),
                format!("{d}/bird.sock"),
                "-P".into(),
                format!("{d}/bird.pid"),
            ],
            Kind::Frr if self.bfd.is_some() || self.forwarding => {
                self.launch_frr_helpers(ns)?;
                frr_daemon(&d, "bgpd")
            }
            Kind::Frr => vec![
                "/usr/lib/frr/bgpd".into(),
                "-f".into(),
                format!("{d}/bgpd.conf"),
                "-Z".into(),
                "-S".into(),
                "--vty_socket".into(),
                d.clone(),
                "-i".into(),
                format!("{d}/bgpd.pid"),
            ],
            Kind::Gobgp => vec![
                "gobgpd".into(),
                "-f".into(),
                format!("{d}/gobgp.toml"),
                "-p".into(),
                "--pprof-disable".into(),
            ],
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.log();
        self.process = Some(ns.spawn_logged(&argv, &log)?);
        // Ready when its control interface answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.control(&self.status_query()).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start in 10 s; log {}:\n{}",
                    self.kind.name(),
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn status_query(&self) -> Vec<String> {
        match self.kind {
            Kind::Bird => vec!["show status".into()],
            Kind::Frr => vec!["show bgp summary json".into()],
            Kind::Gobgp => vec!["global".into()],
        }
    }

    /// Runs `args` with the router's own CLI (birdc, vtysh -c, gobgp).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.control(&args)
    }

    /// The router process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Runs a command on the router's control interface.
    fn control(&self, args: &[String]) -> anyhow::Result<String> {
        let d = self.dir.display().to_string();
        let mut cmd = match self.kind {
            Kind::Bird => {
                let mut c = Command::new("birdc");
                c.args(["-s", &format!("{d}/bird.sock")]);
                c
            }
            Kind::Frr => {
                let mut c = ns_command(&self.ns, "vtysh");
                c.args(["--vty_socket", &d, "-c"]);
                c
            }
            Kind::Gobgp => ns_command(&self.ns, "gobgp"),
        };
        let out = cmd.args(args).output().context("run the router's CLI")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains("Unable to connect") {
            bail!(
                "{:?} failed: {}{}",
                args,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// Whether the session with `neighbor` is Established.
    pub fn established(&self, neighbor: IpAddr) -> anyhow::Result<bool> {
        let i = self
            .neighbors
            .iter()
            .position(|n| n.addr == neighbor)
            .context("not a configured neighbour")?;
        Ok(match self.kind {
            Kind::Bird => self
                .control(&["show protocols".into(), format!("barelb{i}")])?
                .contains("Established"),
            Kind::Frr => {
                let v: serde_json::Value =
                    serde_json::from_str(&self.control(&["show bgp summary json".into()])?)?;
                v["ipv4Unicast"]["peers"][neighbor.to_string()]["state"] == "Established"
            }
            Kind::Gobgp => {
                let v: serde_json::Value = serde_json::from_str(&self.control(&[
                    "neighbor".into(),
                    neighbor.to_string(),
                    "-j".into(),
                ])?)?;
                v["state"]["session_state"] == 6
            }
        })
    }

    /// Waits until the session with `neighbor` is Established.
    pub fn wait_established(&self, neighbor: IpAddr, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.established(neighbor).unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{} never saw an Established session with {neighbor} within {within:?}",
            self.kind.name()
        )
    }

    /// Every IPv4 and IPv6 unicast route it holds, by prefix.
    pub fn routes(&self) -> anyhow::Result<BTreeMap<String, Route>> {
        match self.kind {
            Kind::Bird => Ok(parse_bird(&self.control(&["show route all".into()])?)),
            Kind::Frr => {
                // FRR 8.4 has no detailed JSON for a whole table: list the
                // prefixes, then ask for each one.
                let mut out = BTreeMap::new();
                for af in ["ipv4", "ipv6"] {
                    let v: serde_json::Value = serde_json::from_str(
                        &self.control(&[format!("show bgp {af} unicast json")])?,
                    )?;
                    let prefixes: Vec<String> = v["routes"]
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default();
                    for prefix in prefixes {
                        let d: serde_json::Value = serde_json::from_str(
                            &self.control(&[format!("show bgp {af} unicast {prefix} json")])?,
                        )?;
                        if let Some(r) = parse_frr(&d) {
                            out.insert(prefix, r);
                        }
                    }
                }
                Ok(out)
            }
            Kind::Gobgp => {
                let mut out = BTreeMap::new();
                for af in ["ipv4", "ipv6"] {
                    let text = self.control(&[
                        "global".into(),
                        "rib".into(),
                        "-a".into(),
                        af.into(),
                        "-j".into(),
                    ])?;
                    let v: serde_json::Value = serde_json::from_str(&text)?;
                    parse_gobgp(&v, &mut out);
                }
                Ok(out)
            }
        }
    }

    /// Next hops of every path BIRD holds for `prefix` (several when
    /// several speakers announce it: ECMP).
    pub fn next_hops(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        if self.kind != Kind::Bird {
            bail!("next_hops is implemented for BIRD only");
        }
        let text = self.control(&["show route all for".into(), prefix.into()])?;
        let mut hops: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("BGP.next_hop: "))
            .filter_map(|v| v.split_whitespace().next().map(str::to_string))
            .collect();
        hops.sort();
        Ok(hops)
    }

    /// How many prefixes it holds (cheaper than [`Router::routes`] for big tables).
    pub fn route_count(&self) -> anyhow::Result<usize> {
        match self.kind {
            Kind::Bird => {
                let text = self.control(&["show route count".into()])?;
                // One "N of M routes for K networks in table T" line per table.
                Ok(text
                    .lines()
                    .filter(|l| l.contains("routes for"))
                    .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
                    .sum())
            }
            _ => Ok(self.routes()?.len()),
        }
    }

    /// Waits until `check(routes)` holds; returns the last routes seen.
    pub fn wait_routes(
        &self,
        within: Duration,
        check: impl Fn(&BTreeMap<String, Route>) -> bool,
    ) -> anyhow::Result<BTreeMap<String, Route>> {
        let deadline = Instant::now() + within;
        let mut last = BTreeMap::new();
        while Instant::now() < deadline {
            if let Ok(r) = self.routes() {
                if check(&r) {
                    return Ok(r);
                }
                last = r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{}: routes never reached the expected state within {within:?}; last seen: {last:#?}",
            self.kind.name()
        )
    }

    /// Kills the router (SIGKILL: no NOTIFICATION goes out).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
        for mut h in self.helpers.drain(..) {
            h.kill();
        }
    }

    /// Starts it again with the same configuration.
    pub fn restart(&mut self, ns: &Netns) -> anyhow::Result<()> {
        self.kill();
        self.launch(ns)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the router: a frozen router keeps
    /// its TCP connections but sends nothing, like a hung peer.
    /// (Every daemon of it: bfdd too, so its BFD falls silent as well.)
    pub fn freeze(&self, frozen: bool) -> anyhow::Result<()> {
        let pid = self.process.as_ref().context("not running")?.pid();
        let sig = if frozen { "-STOP" } else { "-CONT" };
        for pid in std::iter::once(pid).chain(self.helpers.iter().map(Process::pid)) {
            let ok = Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()?
                .success();
            if !ok {
                bail!("kill {sig} {pid} failed");
            }
        }
        Ok(())
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        // A frozen process would ignore SIGTERM; SIGKILL works regardless.
        self.kill();
    }
}

/// `show route all` text: a line per route starting at column 0 with the
/// prefix (or indented for further paths of the same prefix), attribute
/// lines indented with a tab.
fn parse_bird(text: &str) -> BTreeMap<String, Route> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("BIRD ") || line.starts_with("Table ") || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let prefix = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            out.insert(prefix.clone(), Route::default());
            current = Some(prefix);
            continue;
        }
        let Some(r) = current.as_ref().and_then(|p| out.get_mut(p)) else {
            continue;
        };
        let l = line.trim();
        if let Some(v) = l.strip_prefix("BGP.next_hop: ") {
            r.next_hop = v.split_whitespace().next().unwrap_or_default().to_string();
        } else if let Some(v) = l.strip_prefix("BGP.as_path: ") {
            r.as_path = v
                .split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect();
        } else if let Some(v) = l.strip_prefix("BGP.local_pref: ") {
            r.local_pref = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("BGP.community: ") {
            // "(64500,10) (64500,11)"
            r.communities = v
                .split(')')
                .filter_map(|c| c.trim().strip_prefix('('))
                .map(|c| c.replace(',', ":").replace(' ', ""))
                .collect();
        } else if let Some(v) = l.strip_prefix("BGP.large_community: ") {
            r.large_communities = v
                .split(')')
                .filter_map(|c| c.trim().strip_prefix('('))
                .map(|c| c.replace(", ", ":").replace(',', ":"))
                .collect();
        }
    }
    out
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_str()
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `show bgp <af> unicast PREFIX json`: the first path's attributes.
fn parse_frr(v: &serde_json::Value) -> Option<Route> {
    let p = v["paths"].as_array()?.first()?;
    Some(Route {
        next_hop: p["nexthops"][0]["ip"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        as_path: strings(&p["aspath"]["string"])
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
        communities: strings(&p["community"]["string"]),
        large_communities: strings(&p["largeCommunity"]["string"]),
        local_pref: p["locPrf"].as_u64().and_then(|n| u32::try_from(n).ok()),
    })
}

/// `gobgp global rib -a <af> -j`: prefix → [{attrs: [{type, …}]}].
fn parse_gobgp(v: &serde_json::Value, out: &mut BTreeMap<String, Route>) {
    let Some(routes) = v.as_object() else {
        return;
    };
    for (prefix, paths) in routes {
        let Some(attrs) = paths[0]["attrs"].as_array() else {
            continue;
        };
        let mut r = Route::default();
        for a in attrs {
            match a["type"].as_u64() {
                Some(2) => {
                    for seg in a["as_paths"].as_array().cloned().unwrap_or_default() {
                        for asn in seg["asns"].as_array().cloned().unwrap_or_default() {
                            r.as_path
                                .extend(asn.as_u64().and_then(|n| u32::try_from(n).ok()));
                        }
                    }
                }
                Some(3) | Some(14) => {
                    r.next_hop = a["nexthop"].as_str().unwrap_or_default().to_string();
                }
                Some(5) => r.local_pref = a["value"].as_u64().and_then(|n| u32::try_from(n).ok()),
                Some(8) => {
                    r.communities = a["communities"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(serde_json::Value::as_u64)
                        .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                        .collect();
                }
                Some(32) => {
                    r.large_communities = a["value"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|c| format!("{}:{}:{}", c["ASN"], c["LocalData1"], c["LocalData2"]))
                        .collect();
                }
                _ => {}
            }
        }
        out.insert(prefix.clone(), r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bird_route_text_is_read() {
        let text = "BIRD 2.0.12 ready.\nTable master4:\n198.51.100.7/32      unicast [barelb0 12:17:38.798] * (100) [AS64500i]\n\
\tvia 198.18.9.2 on veth-r\n\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.as_path: 64500\n\tBGP.next_hop: 198.18.9.2\n\
\tBGP.local_pref: 100\n\tBGP.community: (64500,10) (64500,11)\n\tBGP.large_community: (64500, 1, 2)\n\n\
Table master6:\n2001:db8:5::7/128    unicast [barelb0 12:17:38.798 from 198.18.9.2] * (100) [AS64500i]\n\
\tBGP.next_hop: 2001:db8:9::2 fe80::1\n";
        let r = parse_bird(text);
        let v4 = &r["198.51.100.7/32"];
        assert_eq!(v4.next_hop, "198.18.9.2");
        assert_eq!(v4.as_path, [64500]);
        assert_eq!(v4.local_pref, Some(100));
        assert_eq!(v4.communities, ["64500:10", "64500:11"]);
        assert_eq!(v4.large_communities, ["64500:1:2"]);
        assert_eq!(r["2001:db8:5::7/128"].next_hop, "2001:db8:9::2");
    }
}
