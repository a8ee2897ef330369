//! The gRPC server speakers connect to. Only the leader serves; a follower
//! refuses with UNAVAILABLE so a speaker tries the next operator address.
//! HTTP/2 keepalive pings detect a speaker that vanished without closing
//! its connection (node lost, cable pulled) within interval + timeout.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barelb_control::v1::control_server::{Control, ControlServer};
use barelb_control::v1::{OperatorMessage, SpeakerMessage, speaker_message};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::StreamExt as _;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use super::Hub;
use super::auth::{Authenticator, Refusal};
use super::hub::Arrival;
use super::hub::OUTBOX;
use crate::log_once::LogOnce;
use crate::metrics::{KindLabels, Metrics, ReasonLabels};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    /// A Unix socket (the lab: speakers in other network namespaces reach
    /// it through the filesystem, via a relay).
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("unix:") {
            Some(p) => Ok(Listen::Unix(p.into())),
            None => s
                .parse()
                .map(Listen::Tcp)
                .map_err(|_| format!("{s:?} is neither HOST:PORT nor unix:PATH")),
        }
    }
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: Listen,
    pub keepalive: Duration,
    pub keepalive_timeout: Duration,
    /// Where the served certificate comes from (renewed while serving).
    pub certs: crate::serving_cert::Source,
}

#[derive(Debug)]
struct Service {
    hub: Arc<Hub>,
    auth: Authenticator,
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// Refusals already logged, by node, reason and peer.
    refusals_logged: LogOnce<(String, &'static str, Option<IpAddr>)>,
}

/// A rogue speaker retries every few seconds: each refusal is counted, but
/// logged once in this long per node, reason and peer address.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(600);

type Outbound = Pin<Box<dyn Stream<Item = Result<OperatorMessage, Status>> + Send>>;

impl Service {
    fn refuse(&self, node: &str, peer: Option<IpAddr>, r: &Refusal) -> Status {
        self.metrics
            .control_refused
            .get_or_create(&ReasonLabels {
                reason: r.reason().into(),
            })
            .inc();
        let key = (node.to_string(), r.reason(), peer);
        if self.refusals_logged.first(key, Instant::now()) {
            tracing::warn!(node, ?peer, reason = r.reason(), error = %r, "speaker refused (logged once per 10 minutes per node, reason and peer; barelb_control_refused_total counts each)");
        } else {
            tracing::debug!(node, ?peer, reason = r.reason(), error = %r, "speaker refused");
        }
        match r {
            Refusal::Unavailable(_) => Status::unavailable(r.to_string()),
            Refusal::WrongNode { .. }
            | Refusal::WrongServiceAccount(_)
            | Refusal::WrongSource { .. } => Status::permission_denied(r.to_string()),
            _ => Status::unauthenticated(r.to_string()),
        }
    }

    /// Token, node and source address: who may speak for `node`.
    async fn admit(
        &self,
        node: &str,
        token: Option<String>,
        peer: Option<IpAddr>,
    ) -> Result<(), Status> {
        let Some(token) = token else {
            return Err(self.refuse(node, peer, &Refusal::NoToken));
        };
        if let Err(r) = self.auth.check(&token, node).await {
            return Err(self.refuse(node, peer, &r));
        }
        // A Unix socket (the lab's relay) has no peer address to check.
        if let Some(ip) = peer {
            let Some(sources) = self.hub.node_sources() else {
                let r = Refusal::Unavailable("the operator has not read the Nodes yet".into());
                return Err(self.refuse(node, peer, &r));
            };
            if let Err(r) = super::auth::check_source(node, ip, &sources) {
                return Err(self.refuse(node, peer, &r));
            }
        }
        Ok(())
    }

    fn count(&self, kind: &str) {
        self.metrics
            .control_messages
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }
}

#[tonic::async_trait]
impl Control for Service {
    type SessionStream = Outbound;

    async fn session(
        &self,
        req: Request<Streaming<SpeakerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        if !*self.leader.borrow() {
            return Err(Status::unavailable("not the leader; try another operator"));
        }
        let peer = req.remote_addr().map(|a| a.ip().to_canonical());
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await? {
            Some(SpeakerMessage {
                msg: Some(speaker_message::Msg::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        self.count("hello");
        let node = hello.node.clone();
        if node.is_empty() || hello.protocol == 0 {
            return Err(Status::invalid_argument(
                "Hello needs a node name and a protocol version",
            ));
        }
        self.admit(&node, token, peer).await?;
        let (tx, rx) = mpsc::channel(OUTBOX);
        // Weak: the hub alone keeps the stream open (it ends it by dropping its sender).
        let echo = tx.downgrade();
        let arrival = Arrival {
            holding: hello
                .holding
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            started_ms: hello.started_unix_ms,
        };
        let id = self.hub.attach(&node, tx, arrival);
        let link_up = hello.interfaces.iter().all(|i| i.carrier);
        if !link_up {
            self.hub.link(&node, id, false);
        }
        tracing::info!(node, version = %hello.version, protocol = hello.protocol, "speaker connected");
        let hub = self.hub.clone();
        let metrics = self.metrics.clone();
        let mut leader = self.leader.clone();
        tokio::spawn(async move {
            let count = |kind: &str| {
                metrics
                    .control_messages
                    .get_or_create(&KindLabels { kind: kind.into() })
                    .inc();
            };
            let cause = loop {
                tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(SpeakerMessage { msg: Some(speaker_message::Msg::Ack(a)) })) => {
                            count("ack");
                            hub.ack(&node, id, a.generation, &a.error);
                        }
                        Ok(Some(SpeakerMessage { msg: Some(speaker_message::Msg::Report(r)) })) => {
                            count("report");
                            if !r.links.is_empty() {
                                hub.link(&node, id, r.links.iter().all(|l| l.carrier));
                            }
                            // Every report carries all of the speaker's sessions.
                            hub.sessions(&node, id, r.bgp.into_iter().map(|b| (b.peer, b.state)).collect());
                            for c in &r.conflicts {
                                tracing::warn!(node, address = %c.ip, other_mac = %c.mac, "speaker reports another host claiming an address");
                            }
                            if !r.conflicts.is_empty() {
                                answer_conflicts(&echo);
                            }
                        }
                        Ok(Some(SpeakerMessage { msg: Some(speaker_message::Msg::Leaving(l)) })) => {
                            count("leaving");
                            tracing::info!(node, reason = %l.reason, "speaker says it is leaving");
                            hub.leaving(&node, id);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break "stream-ended",
                        Err(e) => {
                            tracing::info!(node, error = %e, "speaker stream lost");
                            break "stream-lost";
                        }
                    },
                    r = leader.changed() => {
                        if r.is_err() || !*leader.borrow() {
                            break super::hub::STEPPED_DOWN;
                        }
                    }
                }
            };
            let at = Instant::now();
            tracing::info!(node, cause, "speaker disconnected");
            hub.detach(&node, id, cause, at);
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }
}

/// Tells a speaker that reported a conflict that its operator hears it: an
/// empty Delta of generation 0 (proto `Delta`). A speaker whose stream is
/// silently cut gets no answer and yields the address to the host that
/// claimed it, within its probe time rather than its keepalive timeout.
fn answer_conflicts(echo: &mpsc::WeakSender<Result<OperatorMessage, Status>>) {
    let Some(tx) = echo.upgrade() else { return };
    let msg = OperatorMessage {
        msg: Some(barelb_control::v1::operator_message::Msg::Delta(
            barelb_control::v1::Delta::default(),
        )),
    };
    // A full outbox means a stream the hub is about to end: nothing to say.
    let _ = tx.try_send(Ok(msg));
}

/// Serves until `shutdown` turns true.
pub async fn run(
    settings: Settings,
    hub: Arc<Hub>,
    auth: Authenticator,
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let svc = Service {
        hub,
        auth,
        leader,
        metrics: metrics.clone(),
        refusals_logged: LogOnce::new(REFUSAL_LOG_INTERVAL),
    };
    let (certs, _) =
        crate::serving_cert::start("control", settings.certs, metrics.clone(), shutdown.clone())?;
    let acceptor = super::tls::acceptor(certs)?;
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(settings.keepalive))
        .http2_keepalive_timeout(Some(settings.keepalive_timeout));
    let router = builder.add_service(ControlServer::new(svc));
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    match settings.listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "control channel listening");
            let conns = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|c| {
                // Small messages, each awaited by a speaker: no Nagle delay.
                if let Ok(c) = &c {
                    let _ = c.set_nodelay(true);
                }
                c
            });
            let incoming = super::tls::incoming(conns, acceptor, metrics, |c| {
                c.peer_addr().ok().map(|a| a.ip())
            });
            router.serve_with_incoming_shutdown(incoming, stop).await?;
        }
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path)?;
            tracing::info!(path = %path.display(), "control channel listening");
            let conns = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let incoming = super::tls::incoming(conns, acceptor, metrics, |_| None);
            router.serve_with_incoming_shutdown(incoming, stop).await?;
        }
    }
    Ok(())
}
