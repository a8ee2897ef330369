//! The hub's state and decisions, single-threaded: who is connected, what
//! each was told, and the plan. Every input change (units or nodes from the
//! controller, a speaker attaching or detaching, a link report) replans and
//! sends each affected speaker only its change. Layer-2 moves are logged
//! and counted with their cause, and timed from the fault.
//!
//! [`super::Hub`] runs a `Core` on a thread of its own and defers replans
//! while it drains a burst of commands (one plan for a connect storm);
//! tests drive a `Core` directly, each call replanning at once.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use barelb_control::v1::{OperatorMessage, operator_message};
use tokio::sync::watch;

use super::{Inputs, Outbox, STEPPED_DOWN, Sessions};
use crate::control::messages::{self, NodeView};
use crate::control::traces::{self, PendingTraces, Traced};
use crate::metrics::{KindLabels, Metrics, ReasonLabels};
use barelb_core::planner::{self, Node, Plan};
use barelb_runtime::TraceContext;

mod gauges;
mod heartbeats;
mod owners;
mod settle;
mod succession;
pub use heartbeats::Heartbeat;
use heartbeats::Heartbeats;
use owners::{adopt, current_owners, quiet_moves, reannounce_held_elsewhere};
pub use settle::SettleTimes;

#[derive(Debug)]
struct Speaker {
    id: u64,
    tx: Outbox,
    sent: Option<NodeView>,
    generation: u64,
    /// Generation → when it was sent (for the apply-latency histogram).
    in_flight: BTreeMap<u64, Instant>,
    link_up: bool,
    /// Said Leaving: planned without, and told to let go only once the
    /// next owners have acked (make before break).
    leaving: bool,
    /// Layer-2 addresses it said it answers for when it connected: its
    /// Snapshot gives those back quietly.
    holding: BTreeSet<IpAddr>,
    /// When its process started (ms since the epoch; 0: not said).
    started_ms: u64,
    /// The earlier-started speakers of this node it replaced: told they
    /// are superseded only once this one has applied all it was sent, so
    /// the node never stops answering (make before break).
    predecessors: Vec<Outbox>,
    /// Layer-2 addresses it keeps that its next Delta gives again, so it
    /// announces them again (`owners::reannounce_held_elsewhere`).
    reannounce: BTreeSet<IpAddr>,
}

/// What a connecting speaker says of itself (its Hello).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    /// Layer-2 addresses it answers for as it connects.
    pub holding: BTreeSet<IpAddr>,
    /// When its process started (ms since the epoch; 0: not said).
    pub started_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    /// The end of a new leader's settle period (`SettleTimes::period`
    /// after the first speaker is back; its hard end follows from it):
    /// speakers reconnect one by one, and a plan of the first few would
    /// move addresses to them. Until the period is over (`settle`), plans
    /// are adopted (see `adopt`) rather than sent as made.
    hold_until: Option<Instant>,
    settled: bool,
    /// Inputs arrived (nothing is sent before: an empty plan would tell
    /// speakers to drop what they announce).
    loaded: bool,
    /// While unsettled: each layer-2 address a reconnecting speaker said it
    /// holds, and which.
    claimed: BTreeMap<IpAddr, String>,
    /// While unsettled: the node each layer-2 address was last announced
    /// by (the Services' Announced conditions, or this hub's last plan
    /// before every speaker went), for the settle period to wait for.
    last_owners: BTreeMap<IpAddr, String>,
    /// While unsettled: the nodes' kubelet heartbeats, once read.
    heartbeats: Heartbeats,
    inputs: Inputs,
    speakers: BTreeMap<String, Speaker>,
    plan: Plan,
    /// The planner's own output (before any adoption) and the nodes it was
    /// made from, while the other inputs are unchanged since: a change of
    /// eligibility alone then replans incrementally — also while unsettled,
    /// so a reconnect storm and its settling replan hash only what changed.
    planned: Option<(Plan, Vec<Node>)>,
    next_id: u64,
    /// Each connected speaker's BGP sessions.
    sessions: Sessions,
    /// Traced allocations the next plans continue.
    traces: PendingTraces,
}

/// The hub's state with what it publishes. One thread owns it (hence
/// `RefCell`: nothing else ever borrows it).
#[derive(Debug)]
pub struct Core {
    state: RefCell<State>,
    settle: SettleTimes,
    metrics: Arc<Metrics>,
    plan_tx: watch::Sender<Arc<Plan>>,
    sessions_tx: watch::Sender<Arc<Sessions>>,
    awaited_tx: watch::Sender<Arc<BTreeSet<String>>>,
    /// While true, replans are noted in `pending` and made by `flush`.
    defer: Cell<bool>,
    /// The first deferred replan's cause and its fault's detection.
    pending: RefCell<Option<(String, Instant)>>,
    /// The per-speaker gauges wait for `flush` too: each costs a pass over
    /// the plan and every speaker, once per batch rather than per attach.
    gauges_stale: Cell<bool>,
}

impl Core {
    /// `settle`: how long after the first speaker connects (to a new
    /// leader) plans are adopted to what speakers say they hold (`adopt`)
    /// rather than sent as made; it ends early once every Ready node's
    /// speaker is back, and goes on (up to its `max`) for addresses whose
    /// last announcer is Ready but not back (see `settle`). A leader change
    /// moves nothing and leaves no gap, and a failover meanwhile is not
    /// delayed.
    pub fn new(metrics: Arc<Metrics>, settle: impl Into<SettleTimes>) -> Self {
        let (plan_tx, _) = watch::channel(Arc::new(Plan::default()));
        let (sessions_tx, _) = watch::channel(Arc::new(Sessions::new()));
        let (awaited_tx, _) = watch::channel(Arc::new(BTreeSet::new()));
        Core {
            awaited_tx,
            settle: settle.into(),
            sessions_tx,
            state: RefCell::new(State::default()),
            metrics,
            plan_tx,
            defer: Cell::new(false),
            pending: RefCell::new(None),
            gauges_stale: Cell::new(false),
        }
    }

    fn lock(&self) -> RefMut<'_, State> {
        self.state.borrow_mut()
    }

    /// From now until [`Core::flush`], replans are deferred.
    pub fn defer(&self) {
        self.defer.set(true);
    }

    /// Makes the deferred replan, if any, and stops deferring.
    pub fn flush(&self) {
        self.defer.set(false);
        let pending = self.pending.borrow_mut().take();
        let mut s = self.lock();
        if let Some((cause, detected)) = pending {
            self.replan(&mut s, &cause, detected);
        }
        if self.gauges_stale.get() {
            self.publish_speakers(&s);
        }
    }

    /// The latest plan, for Service conditions and events.
    pub fn plans(&self) -> watch::Receiver<Arc<Plan>> {
        self.plan_tx.subscribe()
    }

    /// The speakers' BGP sessions, for BGPPeer status.
    pub fn sessions_watch(&self) -> watch::Receiver<Arc<Sessions>> {
        self.sessions_tx.subscribe()
    }

    /// New units or nodes from the controller.
    pub fn set_inputs(&self, inputs: Inputs, cause: &str) {
        let mut s = self.lock();
        if s.loaded && s.inputs == inputs {
            return;
        }
        s.loaded = true;
        s.inputs = inputs;
        s.planned = None;
        self.replan(&mut s, cause, Instant::now());
    }

    /// `ips` were allocated in the trace `t`: the plan that first places
    /// them continues it, down to the speakers.
    pub fn note_trace(&self, ips: &[IpAddr], t: &TraceContext) {
        self.lock().traces.note(ips, t, Instant::now());
    }

    /// A speaker's stream is up; returns its connection id. An older stream
    /// of the same node is replaced (its sender dropped).
    pub fn attach(&self, node: &str, tx: Outbox) -> u64 {
        self.attach_holding(node, tx, BTreeSet::new())
    }

    /// [`Core::attach`] for a speaker that already answers for `holding`.
    pub fn attach_holding(&self, node: &str, tx: Outbox, holding: BTreeSet<IpAddr>) -> u64 {
        let id = {
            let mut s = self.lock();
            s.next_id += 1;
            s.next_id
        };
        let arrival = Arrival {
            holding,
            started_ms: 0,
        };
        self.attach_as(node, id, tx, arrival);
        id
    }

    /// [`Core::attach_holding`] with the connection id `id` (unique per
    /// stream, given by the caller). Of two speakers for one node the
    /// later-started keeps the stream; the other's ends with
    /// [`succession::superseded`] — an earlier-started newcomer's at once,
    /// a replaced one's once the newcomer has applied its plan (`ack`). If
    /// the newcomer goes first, the replaced one's stream just ends and it
    /// reconnects holding its addresses.
    pub fn attach_as(&self, node: &str, id: u64, tx: Outbox, arrival: Arrival) {
        let Arrival {
            holding,
            started_ms,
        } = arrival;
        let mut s = self.lock();
        let mut predecessors = Vec::new();
        if let Some(current) = s.speakers.get(node) {
            if !succession::newcomer_wins(current.started_ms, started_ms) {
                tracing::debug!(
                    node,
                    "an earlier-started speaker connected: told it is superseded"
                );
                let _ = tx.try_send(Err(succession::superseded(node)));
                return;
            }
            if current.started_ms != started_ms
                && let Some(current) = s.speakers.remove(node)
            {
                tracing::info!(
                    node,
                    "a later-started speaker connected: the earlier one is told it is superseded once the later has applied its plan"
                );
                predecessors = current.predecessors;
                predecessors.push(current.tx);
            }
        }
        self.settle.start(&mut s, Instant::now());
        if !s.settled {
            for ip in &holding {
                let taken = s
                    .claimed
                    .get(ip)
                    .is_some_and(|other| other != node && s.speakers.contains_key(other));
                if !taken {
                    s.claimed.insert(*ip, node.to_string());
                }
            }
        }
        let again = reannounce_held_elsewhere(&mut s, node, &holding);
        if again > 0 {
            tracing::info!(
                node,
                addresses = again,
                "a speaker reconnected holding addresses other nodes own: their owners announce them again"
            );
        }
        s.speakers.insert(
            node.to_string(),
            Speaker {
                id,
                tx,
                sent: None,
                generation: 0,
                in_flight: BTreeMap::new(),
                link_up: true,
                leaving: false,
                holding,
                started_ms,
                predecessors,
                reannounce: BTreeSet::new(),
            },
        );
        self.count_connected(&mut s);
        self.replan(&mut s, "speaker-connected", Instant::now());
    }

    /// The BGP session states stream `id` of `node` reports (all of them).
    pub fn sessions(&self, node: &str, id: u64, sessions: BTreeMap<String, String>) {
        let mut s = self.lock();
        if s.speakers.get(node).is_none_or(|sp| sp.id != id) {
            return;
        }
        s.sessions.insert(node.to_string(), sessions);
        self.count_sessions(&s);
    }

    /// The stream `id` of `node` ended (`cause`: why), detected at `at`.
    pub fn detach(&self, node: &str, id: u64, cause: &str, at: Instant) {
        let mut s = self.lock();
        if s.speakers.get(node).is_none_or(|sp| sp.id != id) {
            return;
        }
        s.speakers.remove(node);
        self.count_connected(&mut s);
        if s.speakers.is_empty() {
            // Everyone is gone (leadership lost, or a full outage): the next
            // connection starts a new settle period.
            s.settled = false;
            s.hold_until = None;
            s.claimed.clear();
            // Their speakers are fail-static: the next settle period waits
            // for each address's last announcer.
            let last: Vec<(IpAddr, String)> = s
                .plan
                .l2
                .iter()
                .map(|(ip, o)| (*ip, o.node.clone()))
                .collect();
            s.last_owners.extend(last);
            s.plan = Plan::default();
            s.planned = None;
        }
        if cause == STEPPED_DOWN {
            // No longer the leader: what the others announce is the next
            // leader's to say. Replanning here would move the address of
            // each speaker dropped first to one dropped later.
            return;
        }
        self.replan(&mut s, cause, at);
    }

    /// A link report from `node`.
    pub fn link(&self, node: &str, id: u64, up: bool) {
        let mut s = self.lock();
        let Some(sp) = s.speakers.get_mut(node).filter(|sp| sp.id == id) else {
            return;
        };
        if sp.link_up == up {
            return;
        }
        sp.link_up = up;
        self.publish_speakers(&s);
        self.replan(
            &mut s,
            if up { "link-up" } else { "link-down" },
            Instant::now(),
        );
    }

    /// `node`'s speaker is stopping: its addresses go to their next owners
    /// first; it is told to drop them once those have acked (`ack`).
    pub fn leaving(&self, node: &str, id: u64) {
        let mut s = self.lock();
        let Some(sp) = s.speakers.get_mut(node).filter(|sp| sp.id == id) else {
            return;
        };
        if sp.leaving {
            return;
        }
        sp.leaving = true;
        tracing::info!(node, "speaker is leaving: handing its addresses over");
        self.replan(&mut s, "speaker-leaving", Instant::now());
    }

    /// The speaker applied `generation`.
    pub fn ack(&self, node: &str, id: u64, generation: u64, error: &str) {
        let mut s = self.lock();
        let Some(sp) = s.speakers.get_mut(node).filter(|sp| sp.id == id) else {
            return;
        };
        if let Some(sent) = sp.in_flight.remove(&generation) {
            self.metrics
                .control_apply_duration
                .observe(sent.elapsed().as_secs_f64());
        }
        sp.in_flight.retain(|g, _| *g > generation);
        if sp.sent.is_some() && sp.in_flight.is_empty() && !sp.predecessors.is_empty() {
            tracing::info!(
                node,
                "the later-started speaker applied its plan: the earlier one is told it is superseded"
            );
            succession::tell_superseded(node, std::mem::take(&mut sp.predecessors));
        }
        if !error.is_empty() {
            tracing::warn!(
                node,
                generation,
                error,
                "speaker could not apply everything"
            );
        }
        if s.speakers.values().any(|sp| sp.leaving) {
            self.release_leaving(&mut s);
        }
    }

    /// Whether every speaker that stays has applied all it was sent: only
    /// then may a leaving one stop announcing what moved to them.
    fn successors_applied(s: &State) -> bool {
        s.speakers
            .values()
            .all(|sp| sp.leaving || sp.in_flight.is_empty())
    }

    /// Sends leaving speakers their part of the current plan (usually
    /// nothing), once the speakers that stay have applied theirs.
    fn release_leaving(&self, s: &mut State) {
        if !Self::successors_applied(s) {
            return;
        }
        let mut parts = s.plan.by_node();
        let configs = &s.inputs.peer_configs;
        let mut dropped = Vec::new();
        for (node, sp) in s.speakers.iter_mut().filter(|(_, sp)| sp.leaving) {
            let np = NodeView::new(parts.remove(node).unwrap_or_default(), configs);
            if !self.send(node, sp, np, &BTreeSet::new(), &[]) {
                dropped.push(node.clone());
            }
        }
        if !dropped.is_empty() {
            for node in dropped {
                s.speakers.remove(&node);
            }
            self.count_connected(s);
        }
    }

    /// Sends `sp` what changed to reach `np` (nothing when nothing did),
    /// the addresses in `quiet` to be taken over quietly; false when its
    /// outbox is full.
    fn send(
        &self,
        node: &str,
        sp: &mut Speaker,
        np: NodeView,
        quiet: &BTreeSet<IpAddr>,
        traced: &[Traced],
    ) -> bool {
        let mut msg = match &sp.sent {
            None => {
                sp.generation += 1;
                Some(operator_message::Msg::Snapshot(messages::snapshot(
                    sp.generation,
                    &np,
                )))
            }
            Some(old) => {
                let again = std::mem::take(&mut sp.reannounce);
                let d = messages::delta(sp.generation + 1, old, &np);
                messages::again(sp.generation + 1, d, old, &np, &again).map(|d| {
                    sp.generation += 1;
                    operator_message::Msg::Delta(d)
                })
            }
        };
        let gained = match &mut msg {
            Some(operator_message::Msg::Snapshot(s)) => s.l2.iter_mut(),
            Some(operator_message::Msg::Delta(d)) => d.l2_set.iter_mut(),
            None => [].iter_mut(),
        };
        for a in gained {
            a.quiet =
                a.ip.parse()
                    .is_ok_and(|ip| quiet.contains(&ip) || sp.holding.contains(&ip));
        }
        let Some(mut msg) = msg else { return true };
        let kind = match msg {
            operator_message::Msg::Snapshot(_) => "snapshot",
            operator_message::Msg::Delta(_) => "delta",
        };
        let span = traces::stamp(&mut msg, node, sp.generation, traced);
        let _sending = span.enter();
        match sp.tx.try_send(Ok(OperatorMessage { msg: Some(msg) })) {
            Ok(()) => {
                self.count(kind);
                sp.in_flight.insert(sp.generation, Instant::now());
                sp.sent = Some(np);
                // Only the first message may give back quietly what it held:
                // a later gain follows a failover, which must be announced.
                sp.holding.clear();
                true
            }
            Err(_) => {
                tracing::warn!(node, "speaker is not keeping up; dropping its stream");
                false
            }
        }
    }

    fn count(&self, kind: &str) {
        self.metrics
            .control_messages
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    fn replan(&self, s: &mut State, cause: &str, detected: Instant) {
        if self.defer.get() {
            let mut pending = self.pending.borrow_mut();
            if pending.is_none() {
                *pending = Some((cause.to_string(), detected));
            }
            return;
        }
        if !s.loaded {
            return;
        }
        let now = Instant::now();
        if !s.settled && self.settle.over(s, now) {
            settle::end(s);
        }
        let span = tracing::info_span!("replan", cause, units = s.inputs.units.len());
        let _planning = span.enter();
        let nodes: Vec<Node> = s
            .inputs
            .nodes
            .iter()
            .map(|n| {
                let sp = s.speakers.get(&n.name);
                Node {
                    connected: sp.is_some_and(|sp| !sp.leaving),
                    link_up: sp.is_none_or(|sp| sp.link_up),
                    ..n.clone()
                }
            })
            .collect();
        let made = match &s.planned {
            Some((prev, before)) => {
                planner::replan_nodes(prev, before, &s.inputs.units, &nodes, &s.inputs.peers)
            }
            None => planner::plan(&s.inputs.units, &nodes, &s.inputs.peers),
        };
        let mut plan = made.clone();
        if !s.settled {
            adopt(&mut plan, s, &nodes, settle::period_over(s, now));
        }
        let traced = traces::placed(&mut s.traces, &plan, cause);
        let quiet = {
            let owners = current_owners(s);
            for (ip, new) in &plan.l2 {
                if let Some(old) = owners.get(ip)
                    && *old != new.node
                {
                    tracing::info!(address = %ip, from = %old, to = %new.node, cause, "announcement moved");
                    self.metrics
                        .failovers
                        .get_or_create(&ReasonLabels {
                            reason: cause.into(),
                        })
                        .inc();
                }
            }
            quiet_moves(s, &owners, &plan)
        };
        let mut dropped = Vec::new();
        let mut parts = plan.by_node();
        // Leaving speakers are sent their part only after the others have
        // applied theirs (`release_leaving`): make before break.
        for (node, sp) in s.speakers.iter_mut().filter(|(_, sp)| !sp.leaving) {
            let np = NodeView::new(
                parts.remove(node).unwrap_or_default(),
                &s.inputs.peer_configs,
            );
            let gains = np
                .plan
                .l2
                .keys()
                .any(|ip| s.plan.l2.get(ip).is_some_and(|o| &o.node != node));
            let before = sp.generation;
            if !self.send(node, sp, np, &quiet, &traced) {
                dropped.push(node.clone());
            } else if gains && sp.generation != before {
                self.metrics
                    .failover_duration
                    .observe(detected.elapsed().as_secs_f64());
            }
        }
        let again = !dropped.is_empty();
        for node in dropped {
            s.speakers.remove(&node);
        }
        s.plan = plan;
        s.planned = Some((made, nodes));
        self.count_connected(s);
        if again {
            // Their addresses go elsewhere now (the dropped are gone, so this ends).
            self.replan(s, "speaker-too-slow", detected);
            return;
        }
        if s.speakers.values().any(|sp| sp.leaving) {
            self.release_leaving(s);
        }
        self.publish_awaited(s);
        if s.settled {
            // An adopted plan is provisional (what nobody claimed is left
            // out): Service conditions wait for the settled one.
            self.plan_tx.send_replace(Arc::new(s.plan.clone()));
        }
    }
}
