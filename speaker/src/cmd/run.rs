//! `barelb-speaker run`: the speaker as deployed — announces what the
//! operator assigns over the control channel (see `agent`).

use std::path::PathBuf;
use std::sync::Arc;

use super::Shutdown;
use std::time::Duration;

use anyhow::Context;
use barelb_speaker::agent::{self, l2::L2};
use barelb_speaker::l2::announcer::AnnounceConfig;
use barelb_speaker::metrics::{InterfaceLabels, Metrics};
use barelb_speaker::net::link::LinkMonitor;
use tokio::sync::{mpsc, watch};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Operator control endpoint, e.g. https://barelb-control.barelb-system.svc:9444
    /// (repeatable; only the leader accepts). Default: the Service
    /// barelb-control from the environment the kubelet injects
    /// (BARELB_CONTROL_SERVICE_HOST and _PORT), which needs no cluster DNS.
    #[arg(long = "operator")]
    operators: Vec<String>,
    /// This node's name (as in the Node object).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Projected ServiceAccount token (audience barelb-control); re-read on every connect.
    #[arg(long, default_value = "/var/run/secrets/barelb/token")]
    token_file: PathBuf,
    /// CA certificate of the operator's control channel (ConfigMap barelb-control-ca, key ca.crt).
    #[arg(long, default_value = "/etc/barelb/ca.crt")]
    ca_file: PathBuf,
    /// Name the operator's certificate must carry.
    #[arg(long, default_value = "barelb-control")]
    server_name: String,
    /// Interfaces for addresses whose pool names none, and whose carrier is
    /// watched and reported (repeatable). Default: chosen per address.
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    #[arg(long, default_value_t = 3)]
    announce_count: u32,
    #[arg(long, default_value_t = 500)]
    announce_interval_ms: u64,
    /// After its first announcements, an address taken on is announced
    /// once a second for this long, so a node that was cut off when it moved
    /// and has healed since hears the new owner and yields within a second
    /// (0s: announce only the first rounds).
    #[arg(long, default_value = "30s", value_parser = super::duration)]
    announce_linger: Duration,
    /// HTTP/2 keepalive towards the operator (ms).
    #[arg(long, default_value_t = 500)]
    keepalive_ms: u64,
    /// On SIGTERM, how long to wait for the operator to hand this node's
    /// addresses to others before stopping anyway (keep it below the Pod's
    /// terminationGracePeriodSeconds).
    #[arg(long, default_value = "20s", value_parser = super::duration)]
    leave_timeout: Duration,
    /// On SIGTERM, how long routes marked GRACEFUL_SHUTDOWN (RFC 8326) get
    /// to converge on the routers before the sessions close.
    #[arg(long, default_value = "2s", value_parser = super::duration)]
    bgp_drain: Duration,
}

/// The operator endpoints: as given, else from the kubelet's Service
/// environment variables of `barelb-control`.
fn operator_endpoints(given: Vec<String>) -> anyhow::Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given);
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("BARELB_CONTROL_SERVICE_HOST"),
        var("BARELB_CONTROL_SERVICE_PORT"),
    ) {
        (Some(host), Some(port)) => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Ok(vec![format!("https://{host}:{port}")])
        }
        _ => anyhow::bail!(
            "no operator endpoint: pass --operator https://HOST:PORT, or run in a Pod created after Service barelb-control (its BARELB_CONTROL_SERVICE_HOST/_PORT are then set)"
        ),
    }
}

pub async fn run(a: RunArgs, metrics: Arc<Metrics>, shutdown: Shutdown) -> anyhow::Result<()> {
    let operators = operator_endpoints(a.operators)?;
    let cfg = AnnounceConfig {
        count: a.announce_count.max(1),
        interval: Duration::from_millis(a.announce_interval_ms),
        refresh: None,
        linger: a.announce_linger,
        linger_interval: Duration::from_secs(1),
    };
    let (l2, conflicts) = L2::new(cfg, metrics.l2.clone(), a.interfaces.clone());
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    for name in &a.interfaces {
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .with_context(|| format!("--interface {name}: no such interface"))?
            .trim()
            .parse::<i32>()?;
        let monitor = LinkMonitor::open(ifindex).context("subscribe to netlink link events")?;
        let (tx, name, l2m) = (link_tx.clone(), name.clone(), metrics.l2.clone());
        let labels = InterfaceLabels {
            interface: name.clone(),
        };
        let mut up = barelb_speaker::net::iface::carrier(&name);
        l2m.link_up.get_or_create(&labels).set(i64::from(up));
        // Exported from the start (at 0), so rate() and increase() see the first change.
        let _ = l2m.carrier_changes.get_or_create(&labels);
        tokio::spawn(async move {
            while let Ok(now) = monitor.next().await {
                if now != up {
                    up = now;
                    tracing::warn!(interface = %name, carrier = up, "carrier changed");
                    l2m.link_up.get_or_create(&labels).set(i64::from(up));
                    l2m.carrier_changes.get_or_create(&labels).inc();
                    let _ = tx.send((name.clone(), up));
                }
            }
        });
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent_cfg = agent::Config {
        operators,
        node: a.node,
        token_file: a.token_file,
        ca_file: a.ca_file,
        server_name: a.server_name,
        keepalive: Duration::from_millis(a.keepalive_ms),
        leave_timeout: a.leave_timeout,
        bgp_drain: a.bgp_drain,
        ready: metrics.ready.clone(),
        started_unix_ms: agent::unix_ms_now(),
    };
    let bgp = agent::bgp::Bgp::new(metrics.bgp.clone(), metrics.bfd.clone());
    let task = tokio::spawn(agent::run(agent_cfg, l2, bgp, conflicts, link_rx, stop_rx));
    shutdown.wait().await;
    stop_tx.send_replace(true);
    task.await.context("agent task")?
}
