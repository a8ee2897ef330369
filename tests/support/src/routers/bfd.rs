//! BFD on the lab's routers: BIRD's `protocol bfd`, FRR's bfdd (which,
//! with zebra, runs beside bgpd as the frr user), and each one's view of a
//! session.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{Kind, Router};
use crate::netlab::Netns;

/// BFD timers a router runs with every neighbour: transmit and receive
/// interval, and the detection multiplier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdTimers {
    pub interval_ms: u64,
    pub multiplier: u8,
}

/// A BFD session as the router shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct BfdView {
    pub state: String,
    /// Seconds.
    pub interval: f64,
    pub timeout: f64,
}

impl Router {
    /// zebra (and bfdd, with BFD) for an FRR that forwards or runs BFD
    /// (bgpd reaches the kernel and bfdd through zebra). They refuse to run
    /// as root: the frr user, in a directory it owns.
    pub(super) fn launch_frr_helpers(&mut self, ns: &Netns) -> anyhow::Result<()> {
        let d = self.dir.display().to_string();
        let ok = Command::new("chown")
            .args(["-R", "frr:frr", &d])
            .status()?
            .success();
        if !ok {
            bail!("chown frr:frr {d} failed (is the frr package installed?)");
        }
        let daemons: &[&str] = if self.bfd.is_some() {
            &["zebra", "bfdd"]
        } else {
            &["zebra"]
        };
        for &daemon in daemons {
            let argv = frr_daemon(&d, daemon);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let log = self.dir.join(format!("{daemon}.log"));
            self.helpers.push(ns.spawn_logged(&argv, &log)?);
            if daemon == "zebra" {
                let api = self.dir.join("zserv.api");
                let deadline = Instant::now() + Duration::from_secs(10);
                while !api.exists() {
                    if Instant::now() > deadline {
                        bail!(
                            "zebra did not open {}: {}",
                            api.display(),
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Ok(())
    }

    /// Its BFD session with `neighbor` (BIRD: `show bfd sessions`), if any.
    pub fn bfd_session(&self, neighbor: IpAddr) -> anyhow::Result<Option<BfdView>> {
        if self.kind == Kind::Frr {
            return self.frr_bfd_session(neighbor);
        }
        if self.kind != Kind::Bird {
            bail!("bfd_session: BIRD and FRR only");
        }
        let text = self.cli(&["show", "bfd", "sessions"])?;
        let addr = neighbor.to_string();
        Ok(text.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // IP address, Interface, State, Since, Interval, Timeout
            if f.first() != Some(&addr.as_str()) || f.len() < 6 {
                return None;
            }
            Some(BfdView {
                state: f[2].to_string(),
                interval: f[f.len() - 2].parse().ok()?,
                timeout: f[f.len() - 1].parse().ok()?,
            })
        }))
    }

    /// FRR's view (`show bfd peers json`), as BIRD shows it: its transmit
    /// interval and the detection time, in seconds.
    fn frr_bfd_session(&self, neighbor: IpAddr) -> anyhow::Result<Option<BfdView>> {
        let v: serde_json::Value = serde_json::from_str(&self.cli(&["show bfd peers json"])?)?;
        let addr = neighbor.to_string();
        let Some(p) = v
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["peer"].as_str() == Some(addr.as_str()))
        else {
            return Ok(None);
        };
        let ms = |k: &str| p[k].as_f64().unwrap_or(0.0);
        let state = match p["status"].as_str().unwrap_or("") {
            "up" => "Up",
            "down" => "Down",
            "init" => "Init",
            other => other,
        };
        Ok(Some(BfdView {
            state: state.to_string(),
            interval: ms("transmit-interval").max(ms("remote-receive-interval")) / 1000.0,
            timeout: ms("remote-detect-multiplier")
                * ms("receive-interval").max(ms("remote-transmit-interval"))
                / 1000.0,
        }))
    }
}

/// The command line of FRR daemon `name` (zebra, bfdd, bgpd) with its
/// sockets, pid file and configuration in `dir`, run as the frr user.
pub(super) fn frr_daemon(dir: &str, name: &str) -> Vec<String> {
    let mut v: Vec<String> = vec![
        format!("/usr/lib/frr/{name}"),
        "-f".into(),
        format!("{dir}/{name}.conf"),
        "-u".into(),
        "frr".into(),
        "-g".into(),
        "frr".into(),
        "-z".into(),
        format!("{dir}/zserv.api"),
        "--vty_socket".into(),
        dir.into(),
        "-i".into(),
        format!("{dir}/{name}.pid"),
    ];
    if name == "bfdd" {
        v.extend(["--bfdctl".into(), format!("{dir}/bfdd.sock")]);
    }
    v
}
