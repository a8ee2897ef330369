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
//! - **Leaving** (SIGTERM: a rolling update, a drain): it marks its BGP
//!   routes GRACEFUL_SHUTDOWN (keeps them as they are with graceful-restart
//!   peers), tells the operator, keeps answering until the operator has
//!   handed its addresses to their next owners and taken them away, then
//!   waits out the BGP drain and stops — bounded by `leave_timeout`.
//! - **Standby**: while it has no live stream, it takes over the layer-2
//!   addresses it stands by for whose owner has fallen silent on the LAN
//!   (`l2::standby`; the prober is `standby`) — the failover when the
//!   leader's node is lost with the addresses it announced.

mod apply;
mod away;
pub mod bgp;
pub mod l2;
pub mod standby;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use barelb_control::v1::control_client::ControlClient;
use barelb_control::v1::{
    Ack, Conflict, Hello, Interface, Leaving, Report, SpeakerMessage, operator_message,
    speaker_message,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use self::away::{Away, meanwhile, opening, take_over};
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
    /// Longest a leaving speaker waits for the operator to take its addresses.
    pub leave_timeout: Duration,
    /// How long BGP routes marked GRACEFUL_SHUTDOWN are given to converge
    /// before the sessions close.
    pub bgp_drain: Duration,
    /// Set once the first Snapshot is applied (`/readyz`).
    pub ready: Arc<AtomicBool>,
    /// When this process started (ms since the epoch), sent in Hello: of
    /// two speakers for one node the operator keeps the later-started.
    pub started_unix_ms: u64,
}

/// Now in ms since the epoch (0 if the clock is before it).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A speaker on its way out: since when, and whether it is done.
#[derive(Debug, Default)]
struct Leave {
    since: Option<Instant>,
}

impl Leave {
    fn active(&self) -> bool {
        self.since.is_some()
    }

    /// Starts leaving: BGP routes are marked GRACEFUL_SHUTDOWN at once
    /// (sessions stay up for the drain) unless the peer does graceful
    /// restart; layer 2 waits for the operator.
    fn begin(&mut self, bgp: &mut Bgp, l2: &mut L2) {
        // A speaker on its way out takes nothing over.
        l2.clear_standbys();
        if self.since.is_none() {
            tracing::info!("stopping: handing layer-2 addresses over");
            self.since = Some(Instant::now());
            bgp.leave();
        }
    }

    fn deadline(&self, cfg: &Config) -> Option<Instant> {
        self.since.map(|t| t + cfg.leave_timeout)
    }

    /// Done: nothing left to hand over, or no time left to wait.
    fn done(&self, cfg: &Config, l2: &L2) -> bool {
        self.deadline(cfg)
            .is_some_and(|d| l2.is_empty() || Instant::now() >= d)
    }

    /// Waits out the rest of the BGP drain.
    async fn finish(&self, cfg: &Config, l2: &L2) {
        if !l2.is_empty() {
            tracing::warn!(timeout = ?cfg.leave_timeout, "stopping without a handover: the operator did not take the addresses in time");
        }
        if let Some(since) = self.since {
            tokio::time::sleep_until(since + cfg.bgp_drain).await;
        }
        tracing::info!("handed over; stopping");
    }
}

/// How long the operator has to answer a conflict report before the stream
/// is taken for lost: within one announcement interval (500 ms) of the new
/// owner's first announcement, the cut speaker has yielded. The operator's own
/// keepalive needs up to 750 ms to notice the cut, the speaker's up to 1.5 s.
const CONFLICT_PROBE: Duration = Duration::from_millis(300);

/// The operator's answer to a conflict report: an empty Delta of generation 0.
fn is_conflict_answer(msg: &operator_message::Msg) -> bool {
    matches!(msg, operator_message::Msg::Delta(d) if d.generation == 0 && *d == Default::default())
}

/// Conflicts seen while connected are remembered this long: if the stream
/// then turns out to be dead (a silent cut is noticed only after the
/// keepalive timeout), the new owner's announcements were already heard.
const YIELD_MEMORY: Duration = Duration::from_secs(10);

type Recent = std::collections::BTreeMap<IpAddr, (Instant, String)>;

/// Stops announcing owned addresses another host claimed recently.
fn yield_recent(l2: &mut L2, recent: &mut Recent) {
    let now = Instant::now();
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

/// The longest wait between connection attempts. Well under a new
/// leader's settle period (the operator's `--control-settle-ms`, 5 s): a
/// speaker asleep in its backoff when the leader arrives is back before the
/// leader stops waiting for it, so its addresses do not move away and back
/// (a 5-s cap once lost that race). A healed node also learns sooner that
/// another node took its addresses.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Backoff between connection attempts: 100 ms doubling to [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(MAX_BACKOFF)
}

/// The operator ended the stream because a later-started speaker serves
/// this node.
fn superseded(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>().is_some_and(|s| {
        s.code() == tonic::Code::Aborted && s.message().starts_with(barelb_control::SUPERSEDED)
    })
}

/// Superseded: stops answering for its layer-2 addresses at once. The
/// later-started speaker on this node answers for what the operator gives
/// it (a leaving speaker that kept answering after its stream was replaced
/// answered for addresses already moved to other nodes: a double answer).
/// BGP is left as it is until this process exits: closing the sessions
/// (Cease) would withdraw the node's paths from routers that keep them
/// through a restart (graceful restart), rehashing their ECMP flows.
fn step_aside(l2: &mut L2) {
    l2.clear();
    l2.clear_standbys();
    if let Err(e) = l2.apply() {
        tracing::warn!(error = %e, "stepping aside");
    }
}

/// The operator answered but is not the leader (see the server's refusal).
fn refused_as_standby(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>().is_some_and(|s| {
        s.code() == tonic::Code::Unavailable && s.message().starts_with("not the leader")
    })
}

/// The connection was not answered within its timeout (as opposed to
/// refused, which comes back at once and must back off).
fn unanswered(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || c.to_string().contains("timed out")
    })
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
    let mut leave = Leave::default();
    let mut standby = standby::Link::start(l2.default_interfaces().to_vec());
    loop {
        if *shutdown.borrow() {
            leave.begin(&mut bgp, &mut l2);
        }
        if leave.done(&cfg, &l2) {
            leave.finish(&cfg, &l2).await;
            return Ok(());
        }
        let target = cfg.operators[which % cfg.operators.len()].clone();
        which += 1;
        let outcome = session(
            &cfg,
            &target,
            &ca,
            &mut l2,
            &mut bgp,
            &mut conflicts,
            &mut links,
            &mut link_state,
            &mut recent,
            &mut leave,
            &mut shutdown,
            &mut attempt,
            &mut standby,
        )
        .await;
        standby.publish(true, &l2);
        match outcome {
            Ok(()) => {
                leave.finish(&cfg, &l2).await;
                return Ok(());
            }
            Err(e) if superseded(&e) => {
                if !l2.is_empty() {
                    tracing::warn!(operator = %target, "a later-started speaker serves this node: stopped answering for layer-2 addresses; asking again every 2 s in case it goes");
                    step_aside(&mut l2);
                }
                attempt = 6; // the slowest pace: it stays refused while the other lives
            }
            Err(e) => {
                tracing::info!(operator = %target, error = %e, "control stream down; keeping announcements (fail-static)");
                yield_recent(&mut l2, &mut recent);
                if refused_as_standby(&e) || unanswered(&e) {
                    // A Service in front of every replica picked a standby,
                    // or a replica that does not answer (its node cut off:
                    // an endpoint still until that Node is NotReady, 40–50 s):
                    // the next connection likely reaches the leader. A
                    // timeout paces such retries itself.
                    attempt = 0;
                }
            }
        }
        // Leaving: reconnect at once to hand over (the operator may be
        // restarting too), else back off.
        let wait = if leave.active() {
            Duration::from_millis(200)
        } else {
            backoff(attempt)
        };
        attempt = attempt.saturating_add(1);
        // While disconnected: apply the yield rule and follow links.
        let deadline = Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                Some((addr, mac)) = conflicts.recv() => {
                    recent.insert(addr, (Instant::now(), mac));
                    yield_recent(&mut l2, &mut recent);
                }
                Some((name, up)) = links.recv() => { link_state.insert(name, up); }
                Some(ips) = standby.takeovers.recv() => take_over(&mut l2, &ips, &standby),
                _ = shutdown.changed(), if !leave.active() => break,
            }
        }
        if attempt > 3 {
            // Reset the pace after a while so a long outage keeps retrying at the slowest pace.
            attempt = attempt.min(6);
        }
    }
}

/// One stream: Hello, then apply what comes, Ack it, report what changes.
/// Returns Ok only once leaving is done (handed over, or out of time).
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
    leave: &mut Leave,
    shutdown: &mut watch::Receiver<bool>,
    attempt: &mut u32,
    standby: &mut standby::Link,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&cfg.token_file)
        .map_err(|e| anyhow::anyhow!("read --token-file {}: {e}", cfg.token_file.display()))?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(cfg.server_name.clone());
    let endpoint = Endpoint::from_shared(target.to_string())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(cfg.keepalive)
        .keep_alive_timeout(cfg.keepalive * 2)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let mut away = Away {
        l2,
        link: standby,
        conflicts,
        recent,
    };
    let channel = meanwhile(endpoint.connect(), &mut away).await?;
    let mut client = ControlClient::new(channel);
    let (out_tx, out_rx) = mpsc::channel::<SpeakerMessage>(64);
    let send = |m: speaker_message::Msg| SpeakerMessage { msg: Some(m) };
    let mut names = away.l2.interfaces();
    names.extend(link_state.keys().cloned());
    names.sort();
    names.dedup();
    out_tx
        .send(send(speaker_message::Msg::Hello(Hello {
            node: cfg.node.clone(),
            protocol: barelb_control::PROTOCOL,
            version: env!("CARGO_PKG_VERSION").into(),
            interfaces: interfaces(&names),
            holding: away.l2.owned().iter().map(ToString::to_string).collect(),
            started_unix_ms: cfg.started_unix_ms,
        })))
        .await?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(out_rx));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", token.trim()).parse()?);
    let mut inbound = opening(client.session(req), &mut away).await?.into_inner();
    // "Up" once the operator has said something: a superseded or refused
    // stream ends before its first message.
    let mut up = false;
    let leaving = |reason: &str| {
        send(speaker_message::Msg::Leaving(Leaving {
            reason: reason.into(),
        }))
    };
    if leave.active() {
        out_tx
            .send(leaving("stopping (said again after a reconnect)"))
            .await?;
    }
    let far = Instant::now() + Duration::from_secs(86_400);
    // Session states go out whenever they change (checked every 250 ms),
    // and with every other report: a report always carries all of them.
    let mut reported = Vec::new();
    let mut session_check = tokio::time::interval(Duration::from_millis(250));
    // A conflict reported and not yet answered: the stream must prove alive by then.
    let mut probe: Option<Instant> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(probe.unwrap_or(far)), if probe.is_some() => {
                anyhow::bail!(
                    "the operator did not answer a conflict report within {} ms: taking the stream for lost",
                    CONFLICT_PROBE.as_millis()
                );
            }
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
            () = tokio::time::sleep_until(leave.deadline(cfg).unwrap_or(far)), if leave.active() => {
                return Ok(());
            }
            _ = shutdown.changed(), if !leave.active() => {
                leave.begin(bgp, l2);
                if l2.is_empty() {
                    return Ok(());
                }
                out_tx.send(leaving("stopping")).await?;
            }
            m = inbound.message() => {
                let Some(m) = m? else { anyhow::bail!("the operator closed the stream") };
                if !up {
                    up = true;
                    tracing::info!(operator = %target, node = %cfg.node, "control stream up");
                    standby.publish(false, l2);
                }
                // Anything from the operator answers a pending conflict probe.
                probe = None;
                let Some(msg) = m.msg else { continue };
                if is_conflict_answer(&msg) {
                    continue;
                }
                // Leaving: the routes are withdrawn and the sessions stay
                // until the drain ends, whatever the operator says of BGP.
                let applied = apply::apply(msg, apply::Target {
                    l2: &mut *l2,
                    bgp: &mut *bgp,
                    recent: &mut *recent,
                    follow_bgp: !leave.active(),
                    ready: &cfg.ready,
                });
                let (generation, result) = (applied.generation, applied.result);
                standby.publish(false, l2);
                out_tx.send(send(speaker_message::Msg::Ack(Ack {
                    generation,
                    error: result.err().unwrap_or_default(),
                }))).await?;
                // Served by a leader: the next loss (a leader change, say)
                // starts the backoff over at 100 ms, not where the first
                // connection attempts left it.
                *attempt = 0;
                if leave.active() && l2.is_empty() {
                    return Ok(());
                }
            }
            Some((addr, mac)) = conflicts.recv() => {
                recent.insert(addr, (Instant::now(), mac.clone()));
                // Connected: the operator decides; tell it. Its answer proves
                // the stream alive; without one, the stream is lost and the
                // address goes to the host that claimed it (yield rule).
                if probe.is_none() {
                    tracing::info!(address = %addr, other_mac = %mac, "another host claims an address: reported; the operator must answer within {} ms", CONFLICT_PROBE.as_millis());
                    probe = Some(Instant::now() + CONFLICT_PROBE);
                }
                reported = bgp.sessions();
                out_tx.send(send(speaker_message::Msg::Report(Report {
                    conflicts: vec![Conflict { ip: addr.to_string(), mac }],
                    bgp: reported.clone(),
                    ..Report::default()
                }))).await?;
            }
            Some(ips) = standby.takeovers.recv() => {
                if up {
                    tracing::info!(addresses = ips.len(), "standby take-over dropped: a stream is up and the operator decides");
                } else {
                    take_over(l2, &ips, standby);
                }
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As tonic reports a connect timeout: hyper-util's connector error
    /// around an io::Error of kind TimedOut.
    #[derive(Debug, thiserror::Error)]
    #[error("tcp connect error")]
    struct Connect(#[source] std::io::Error);

    #[test]
    fn a_connection_not_answered_in_time_is_told_from_one_refused() {
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed");
        let e = anyhow::Error::new(Connect(timed_out)).context("transport error");
        assert!(unanswered(&e));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = anyhow::Error::new(Connect(refused)).context("transport error");
        assert!(!unanswered(&e));
    }
}
