//! The speaker under the operator: one control stream (barelb.control.v1)
//! to the leading operator, whose Snapshot and Deltas become the addresses
//! this node announces.
//!
//! - Reconnects with backoff, trying each operator address in turn (only
//!   the leader accepts).
//! - **Fail-static**: losing the stream changes nothing announced, so the
//!   data path survives an operator or apiserver outage.
//! - **Yield rule**: while it has no live stream, a speaker that sees
//!   another host claim an address it owns stops announcing that address
//!   at once — a speaker cut off from the operator cannot cause split brain.

pub mod bgp;
pub mod l2;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use barelb_control::v1::control_client::ControlClient;
use barelb_control::v1::{
    Ack, Conflict, Hello, Interface, Report, SpeakerMessage, operator_message, speaker_message,
};
use tokio::sync::{mpsc, watch};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use self::bgp::Bgp;
use self::l2::L2;

/// How to reach the operator.
#[derive(Clone, Debug)]
pub struct Config {
    pub operators: Vec<String>,
    pub node: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    /// Name the operator's certificate must carry.
    pub server_name: String,
    pub keepalive: Duration,
}

/// Conflicts seen while connected are remembered this long: if the stream
/// then turns out to be dead (a silent cut is noticed only after the
/// keepalive timeout), the new owner's announcements were already heard.
const YIELD_MEMORY: Duration = Duration::from_secs(10);

type Recent = std::collections::BTreeMap<IpAddr, (tokio::time::Instant, String)>;

/// Stops announcing owned addresses another host claimed recently.
fn yield_recent(l2: &mut L2, recent: &mut Recent) {
    let now = tokio::time::Instant::now();
    let mut changed = false;
    for (addr, (at, mac)) in std::mem::take(recent) {
        if now.duration_since(at) <= YIELD_MEMORY && l2.remove(&addr) {
            tracing::warn!(address = %addr, other_mac = %mac, "another node claimed this address and the operator is unreachable: yielding it");
            changed = true;
        }
    }
    if changed && let Err(e) = l2.apply() {
        tracing::warn!(error = %e, "applying the yield");
    }
}

/// Backoff between connection attempts: 100 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

fn interfaces(names: &[String]) -> Vec<Interface> {
    let addrs = crate::net::iface::addresses().unwrap_or_default();
    names
        .iter()
        .map(|n| Interface {
            name: n.clone(),
            carrier: crate::net::iface::carrier(n),
            addresses: addrs
                .iter()
                .filter(|a| &a.interface == n)
                .map(|a| a.addr.to_string())
                .collect(),
        })
        .collect()
}

/// One line for both halves' errors.
fn both(a: Result<(), String>, b: Result<(), String>) -> Result<(), String> {
    match (a, b) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// Runs until `shutdown` turns true. `links` carries carrier changes.
pub async fn run(
    cfg: Config,
    mut l2: L2,
    mut bgp: Bgp,
    mut conflicts: mpsc::UnboundedReceiver<(IpAddr, String)>,
    mut links: mpsc::UnboundedReceiver<(String, bool)>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ca = std::fs::read(&cfg.ca_file)
        .map_err(|e| anyhow::anyhow!("read --ca-file {}: {e}", cfg.ca_file.display()))?;
    let mut attempt = 0u32;
    let mut which = 0usize;
    let mut link_state: std::collections::BTreeMap<String, bool> = Default::default();
    let mut recent = Recent::new();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let target = cfg.operators[which % cfg.operators.len()].clone();
        which += 1;
        match session(
            &cfg,
            &target,
            &ca,
            &mut l2,
            &mut bgp,
            &mut conflicts,
            &mut links,
            &mut link_state,
            &mut recent,
            &mut shutdown,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!(operator = %target, error = %e, "control stream down; keeping announcements (fail-static)");
                yield_recent(&mut l2, &mut recent);
            }
        }
        let wait = backoff(attempt);
        attempt = attempt.saturating_add(1);
        // While disconnected: apply the yield rule and follow links.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                Some((addr, mac)) = conflicts.recv() => {
                    recent.insert(addr, (tokio::time::Instant::now(), mac));
                    yield_recent(&mut l2, &mut recent);
                }
                Some((name, up)) = links.recv() => { link_state.insert(name, up); }
                _ = shutdown.changed() => return Ok(()),
            }
        }
        if attempt > 3 {
            // Reset the pace after a while so a long outage keeps retrying every 5 s.
            attempt = attempt.min(6);
        }
    }
}

/// One stream: Hello, then apply what comes, Ack it, report what changes.
/// Returns Ok only on shutdown.
#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &Config,
    target: &str,
    ca: &[u8],
    l2: &mut L2,
    bgp: &mut Bgp,
    conflicts: &mut mpsc::UnboundedReceiver<(IpAddr, String)>,
    links: &mut mpsc::UnboundedReceiver<(String, bool)>,
    link_state: &mut std::collections::BTreeMap<String, bool>,
    recent: &mut Recent,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&cfg.token_file)
        .map_err(|e| anyhow::anyhow!("read --token-file {}: {e}", cfg.token_file.display()))?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(cfg.server_name.clone());
    let channel = Endpoint::from_shared(target.to_string())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(cfg.keepalive)
        .keep_alive_timeout(cfg.keepalive * 2)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = ControlClient::new(channel);
    let (out_tx, out_rx) = mpsc::channel::<SpeakerMessage>(64);
    let send = |m: speaker_message::Msg| SpeakerMessage { msg: Some(m) };
    let mut names = l2.interfaces();
    names.extend(link_state.keys().cloned());
    names.sort();
    names.dedup();
    out_tx
        .send(send(speaker_message::Msg::Hello(Hello {
            node: cfg.node.clone(),
            protocol: barelb_control::PROTOCOL,
            version: env!("CARGO_PKG_VERSION").into(),
            interfaces: interfaces(&names),
        })))
        .await?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(out_rx));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", token.trim()).parse()?);
    let mut inbound = client.session(req).await?.into_inner();
    tracing::info!(operator = %target, node = %cfg.node, "control stream up");
    // Session states go out whenever they change (checked every 250 ms),
    // and with every other report: a report always carries all of them.
    let mut reported = Vec::new();
    let mut session_check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = session_check.tick() => {
                let now = bgp.sessions();
                if now != reported {
                    out_tx.send(send(speaker_message::Msg::Report(Report {
                        bgp: now.clone(),
                        ..Report::default()
                    }))).await?;
                    reported = now;
                }
            }
            m = inbound.message() => {
                let Some(m) = m? else { anyhow::bail!("the operator closed the stream") };
                let mut kicks: Vec<IpAddr> = Vec::new();
                let (generation, result) = match m.msg {
                    Some(operator_message::Msg::Snapshot(s)) => {
                        l2.clear();
                        for a in s.l2 {
                            if let Some(addr) = ip(&a.ip) {
                                // The operator gives it (back): old claims no longer count.
                                recent.remove(&addr);
                                kicks.push(addr);
                                l2.set(addr, a.interfaces);
                            }
                        }
                        bgp.clear();
                        for p in s.bgp_peers { bgp.set_peer(p); }
                        for r in s.bgp_routes { bgp.set_route(r); }
                        (s.generation, both(l2.apply(), bgp.apply()))
                    }
                    Some(operator_message::Msg::Delta(d)) => {
                        for r in &d.l2_remove {
                            if let Some(addr) = ip(r) { l2.remove(&addr); }
                        }
                        for a in d.l2_set {
                            if let Some(addr) = ip(&a.ip) {
                                // The operator gives it (back): old claims no longer count.
                                recent.remove(&addr);
                                kicks.push(addr);
                                l2.set(addr, a.interfaces);
                            }
                        }
                        for n in &d.bgp_peers_remove { bgp.remove_peer(n); }
                        for p in d.bgp_peers_set { bgp.set_peer(p); }
                        for r in &d.bgp_routes_remove { bgp.remove_route(r); }
                        for r in d.bgp_routes_set { bgp.set_route(r); }
                        (d.generation, both(l2.apply(), bgp.apply()))
                    }
                    None => continue,
                };
                // Everything (re)assigned is announced again at once: after a
                // reconnect the operator may have moved it away and back.
                for addr in kicks {
                    l2.kick(&addr);
                }
                out_tx.send(send(speaker_message::Msg::Ack(Ack {
                    generation,
                    error: result.err().unwrap_or_default(),
                }))).await?;
            }
            Some((addr, mac)) = conflicts.recv() => {
                recent.insert(addr, (tokio::time::Instant::now(), mac.clone()));
                // Connected: the operator decides; tell it.
                reported = bgp.sessions();
                out_tx.send(send(speaker_message::Msg::Report(Report {
                    conflicts: vec![Conflict { ip: addr.to_string(), mac }],
                    bgp: reported.clone(),
                    ..Report::default()
                }))).await?;
            }
            Some((name, up)) = links.recv() => {
                link_state.insert(name.clone(), up);
                let names: Vec<String> = link_state.keys().cloned().collect();
                reported = bgp.sessions();
                out_tx.send(send(speaker_message::Msg::Report(Report {
                    links: interfaces(&names),
                    bgp: reported.clone(),
                    ..Report::default()
                }))).await?;
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
