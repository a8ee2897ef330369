//! The operator's side of the speakers, shared by the control server and
//! the controller. Its state and decisions live in [`Core`], owned by a
//! thread of its own: callers only queue commands, so a plan of 10,000
//! units over 1,000 nodes never holds up the runtime's workers (keepalive
//! pings, Hellos and Acks are served meanwhile). The thread takes every
//! queued command, then replans once: a connect storm costs a few plans,
//! not one per speaker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Instant;

use barelb_control::v1::OperatorMessage;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use barelb_core::planner::{Node, Peer, Plan, Unit};
use barelb_runtime::TraceContext;

mod state;

pub use state::{Arrival, Core, Heartbeat, SettleTimes};

/// What the controller feeds the hub.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    pub units: Vec<Unit>,
    pub nodes: Vec<Node>,
    pub peers: Vec<Peer>,
    /// Session settings per BGPPeer name (password included).
    pub peer_configs: BTreeMap<String, barelb_control::v1::BgpPeer>,
}

/// What goes down one speaker's stream.
pub type Outbox = mpsc::Sender<Result<OperatorMessage, tonic::Status>>;

/// Messages a speaker may fall behind by before it is dropped (it
/// reconnects and gets a fresh snapshot).
pub const OUTBOX: usize = 256;

/// The cause of the streams a replica ends when it stops leading.
pub const STEPPED_DOWN: &str = "leader-change";

/// Each connected speaker's BGP sessions: node → peer → RFC 4271 state.
pub type Sessions = BTreeMap<String, BTreeMap<String, String>>;

/// One call into the hub, carried out on its thread in order.
#[derive(Debug)]
enum Command {
    Inputs(Box<Inputs>, &'static str),
    Trace(Vec<IpAddr>, TraceContext),
    LastOwners(BTreeMap<IpAddr, String>),
    Heartbeats(BTreeMap<String, Heartbeat>, i64),
    Attach {
        node: String,
        id: u64,
        tx: Outbox,
        arrival: Arrival,
    },
    Detach {
        node: String,
        id: u64,
        cause: &'static str,
        at: Instant,
    },
    Link {
        node: String,
        id: u64,
        up: bool,
    },
    Leaving {
        node: String,
        id: u64,
    },
    Ack {
        node: String,
        id: u64,
        generation: u64,
        error: String,
    },
    Sessions {
        node: String,
        id: u64,
        sessions: BTreeMap<String, String>,
    },
}

/// The handle: queues commands for the hub's thread, which ends when the
/// handle is dropped.
#[derive(Debug)]
pub struct Hub {
    tx: std_mpsc::Sender<Command>,
    next_id: AtomicU64,
    plans: watch::Receiver<Arc<Plan>>,
    sessions: watch::Receiver<Arc<Sessions>>,
    awaited: watch::Receiver<Arc<BTreeSet<String>>>,
    /// Every node's addresses; None until the Nodes are first read.
    node_sources: std::sync::RwLock<Option<Arc<super::auth::NodeSources>>>,
}

impl Hub {
    /// Starts the hub's thread. `settle`: see [`Core::new`].
    pub fn new(metrics: Arc<Metrics>, settle: impl Into<SettleTimes>) -> anyhow::Result<Arc<Self>> {
        let core = Core::new(metrics, settle);
        let (plans, sessions, awaited) =
            (core.plans(), core.sessions_watch(), core.awaited_owners());
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("barelb-hub".into())
            .spawn(move || run(&core, &rx))?;
        Ok(Arc::new(Hub {
            tx,
            next_id: AtomicU64::new(0),
            plans,
            sessions,
            awaited,
            node_sources: std::sync::RwLock::new(None),
        }))
    }

    /// The nodes' addresses, from the controller's Node index.
    pub fn set_node_sources(&self, sources: super::auth::NodeSources) {
        // A poisoned lock only means a holder panicked; the value is whole.
        let mut slot = self.node_sources.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Arc::new(sources));
    }

    /// The nodes' addresses, once read.
    pub fn node_sources(&self) -> Option<Arc<super::auth::NodeSources>> {
        let slot = self.node_sources.read().unwrap_or_else(|p| p.into_inner());
        slot.clone()
    }

    fn send(&self, c: Command) {
        // Fails only once the thread is gone, which it never is while the
        // handle lives (it ends when the handle's sender is dropped).
        let _ = self.tx.send(c);
    }

    /// The latest settled plan, for Service conditions and events.
    pub fn plans(&self) -> watch::Receiver<Arc<Plan>> {
        self.plans.clone()
    }

    /// The speakers' BGP sessions, for BGPPeer status.
    pub fn sessions_watch(&self) -> watch::Receiver<Arc<Sessions>> {
        self.sessions.clone()
    }

    /// New units or nodes from the controller.
    pub fn set_inputs(&self, inputs: Inputs, cause: &'static str) {
        self.send(Command::Inputs(Box::new(inputs), cause));
    }

    /// `ips` were allocated in the trace `t`: the plan that first places
    /// them continues it, down to the speakers.
    pub fn note_trace(&self, ips: &[IpAddr], t: &TraceContext) {
        self.send(Command::Trace(ips.to_vec(), t.clone()));
    }

    /// The node each layer-2 address was last announced by, read by a new
    /// leader: see [`Core::set_last_owners`].
    pub fn set_last_owners(&self, owners: BTreeMap<IpAddr, String>) {
        self.send(Command::LastOwners(owners));
    }

    /// The nodes whose kubelet heartbeats a settling leader needs: see
    /// [`Core::awaited_owners`].
    pub fn awaited_owners(&self) -> watch::Receiver<Arc<BTreeSet<String>>> {
        self.awaited.clone()
    }

    /// The nodes' kubelet heartbeats, read at `read_ms` (this replica's
    /// wall clock): see [`Core::set_heartbeats`].
    pub fn set_heartbeats(&self, beats: BTreeMap<String, Heartbeat>, read_ms: i64) {
        self.send(Command::Heartbeats(beats, read_ms));
    }

    /// A speaker's stream is up (`arrival`: what its Hello said); returns
    /// its connection id. Of two streams for one node the later-started
    /// speaker's is kept, the other ended as superseded.
    pub fn attach(&self, node: &str, tx: Outbox, arrival: Arrival) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.send(Command::Attach {
            node: node.into(),
            id,
            tx,
            arrival,
        });
        id
    }

    /// The stream `id` of `node` ended (`cause`: why), detected at `at`.
    pub fn detach(&self, node: &str, id: u64, cause: &'static str, at: Instant) {
        self.send(Command::Detach {
            node: node.into(),
            id,
            cause,
            at,
        });
    }

    /// A link report from `node`.
    pub fn link(&self, node: &str, id: u64, up: bool) {
        self.send(Command::Link {
            node: node.into(),
            id,
            up,
        });
    }

    /// `node`'s speaker is stopping.
    pub fn leaving(&self, node: &str, id: u64) {
        self.send(Command::Leaving {
            node: node.into(),
            id,
        });
    }

    /// The speaker applied `generation`.
    pub fn ack(&self, node: &str, id: u64, generation: u64, error: &str) {
        self.send(Command::Ack {
            node: node.into(),
            id,
            generation,
            error: error.into(),
        });
    }

    /// The BGP session states stream `id` of `node` reports (all of them).
    pub fn sessions(&self, node: &str, id: u64, sessions: BTreeMap<String, String>) {
        self.send(Command::Sessions {
            node: node.into(),
            id,
            sessions,
        });
    }
}

/// Commands taken at once before a replan: a bound, so that a flood of
/// Acks cannot postpone a failover's plan.
const BATCH: usize = 4096;

/// The hub's thread: waits for a command (or the end of the settle
/// period), takes what else is queued, replans once.
fn run(core: &Core, rx: &std_mpsc::Receiver<Command>) {
    loop {
        let first = match core.deadline() {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(c) => Some(c),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            },
        };
        core.defer();
        match first {
            Some(c) => apply(core, c),
            None => core.settle_deadline(),
        }
        for c in rx.try_iter().take(BATCH) {
            apply(core, c);
        }
        core.flush();
    }
}

fn apply(core: &Core, c: Command) {
    match c {
        Command::Inputs(inputs, cause) => core.set_inputs(*inputs, cause),
        Command::Trace(ips, t) => core.note_trace(&ips, &t),
        Command::LastOwners(owners) => core.set_last_owners(owners),
        Command::Heartbeats(beats, read_ms) => core.set_heartbeats(&beats, read_ms),
        Command::Attach {
            node,
            id,
            tx,
            arrival,
        } => core.attach_as(&node, id, tx, arrival),
        Command::Detach {
            node,
            id,
            cause,
            at,
        } => core.detach(&node, id, cause, at),
        Command::Link { node, id, up } => core.link(&node, id, up),
        Command::Leaving { node, id } => core.leaving(&node, id),
        Command::Ack {
            node,
            id,
            generation,
            error,
        } => core.ack(&node, id, generation, &error),
        Command::Sessions { node, id, sessions } => core.sessions(&node, id, sessions),
    }
}

#[cfg(test)]
mod settle_tests;
#[cfg(test)]
mod standby_tests;
#[cfg(test)]
mod tests;
