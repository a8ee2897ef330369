//! A new leader's settle period: while speakers reconnect one by one, each
//! layer-2 address stays with the speaker that says it holds it, and one
//! nobody claims yet waits — its holder may still be on the way. The period
//! ends when every Ready node's speaker is back; else after `period`, unless
//! an address's last announcer (its Service's Announced condition, or this
//! leader's own last plan) is a Ready node whose speaker is not back yet:
//! that speaker is fail-static and still answers, so moving the address
//! away would flip the client's neighbour entry twice (away, then back once
//! the plan is balanced again). Those addresses wait until their node's
//! speaker is back, their node is no longer Ready, or `max` has passed.
//! An address whose last announcer's kubelet has fallen silent
//! (`heartbeats`: a node gone without a word is Ready for 40–50 s more)
//! waits for nothing, within the period or after it: nobody answers for it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::heartbeats::{Heartbeat, Heartbeats};
use super::{Core, State};
use barelb_core::planner::{self, How};

/// How long a new leader settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettleTimes {
    /// From the first speaker back until the unclaimed addresses are
    /// planned (those awaiting their last announcer's speaker excepted).
    pub period: Duration,
    /// From the first speaker back until the period ends, whoever is
    /// missing (never less than `period`).
    pub max: Duration,
}

impl From<Duration> for SettleTimes {
    /// A period that does not wait longer for anyone.
    fn from(period: Duration) -> Self {
        SettleTimes {
            period,
            max: period,
        }
    }
}

impl SettleTimes {
    /// Starts the period at `now` (the first speaker back), unless it runs
    /// already or is not wanted.
    pub(super) fn start(&self, s: &mut State, now: Instant) {
        if s.settled || s.hold_until.is_some() || self.period.is_zero() {
            return;
        }
        s.hold_until = Some(now + self.period);
        tracing::info!(settle = ?self.period, max = ?self.max, "first speaker connected: each keeps what it holds until the others are back");
    }

    /// Whether the period is over at `now`: it was never wanted, the speaker
    /// of every node that could announce is back (`planner::awaited`: an
    /// excluded node runs none), its hard end has passed, or its period has
    /// and no address awaits its last announcer.
    pub(super) fn over(&self, s: &State, now: Instant) -> bool {
        if self.period.is_zero() {
            return true;
        }
        let awaited = Awaited::of(s);
        let any_ready = s.inputs.nodes.iter().any(planner::awaited);
        if any_ready && awaited.nodes.is_empty() {
            return true;
        }
        match (s.hold_until, self.cap(s)) {
            (Some(period_end), Some(cap)) => {
                now >= cap || (now >= period_end && !awaited.any_address(s))
            }
            _ => false,
        }
    }

    /// The period's hard end: `max` (never less than `period`) after the
    /// first speaker was back.
    fn cap(&self, s: &State) -> Option<Instant> {
        s.hold_until
            .map(|t| t + self.max.saturating_sub(self.period))
    }

    /// When the hub should look again while unsettled: the period's end,
    /// then its hard end.
    fn next_deadline(&self, s: &State, now: Instant) -> Option<Instant> {
        match s.hold_until {
            Some(t) if now < t => Some(t),
            Some(_) => self.cap(s),
            None => None,
        }
    }
}

impl Core {
    /// When the hub should look at the settle period again, while it runs
    /// ([`Core::settle_deadline`] then).
    pub fn deadline(&self) -> Option<Instant> {
        let s = self.lock();
        if s.settled {
            None
        } else {
            self.settle.next_deadline(&s, Instant::now())
        }
    }

    /// The node each layer-2 address was last announced by (a new leader
    /// reads them from the Services' Announced conditions): while settling,
    /// an address whose last announcer is Ready waits for its speaker.
    pub fn set_last_owners(&self, owners: BTreeMap<IpAddr, String>) {
        let mut s = self.lock();
        if !s.settled {
            let nodes: BTreeSet<&str> = owners.values().map(String::as_str).collect();
            tracing::info!(
                addresses = owners.len(),
                ?nodes,
                "read where each layer-2 address was last announced"
            );
            s.last_owners = owners;
        }
    }

    /// The nodes' kubelet heartbeats (node → its Lease), read while some
    /// address awaits its last announcer ([`Core::awaited_owners`]): the
    /// addresses of one whose kubelet has fallen silent are planned at
    /// once, period or not. Replans when who is silent changed.
    /// `read_ms`: this replica's wall clock when they were read.
    pub fn set_heartbeats(&self, beats: &BTreeMap<String, Heartbeat>, read_ms: i64) {
        let mut s = self.lock();
        if s.settled {
            return;
        }
        let owners = Awaited::of(&s).owners(&s);
        let before: Vec<bool> = owners.iter().map(|n| s.heartbeats.silent(n)).collect();
        s.heartbeats.update(beats, Instant::now(), read_ms);
        let mut changed = false;
        for (node, was) in owners.iter().zip(before) {
            let silent = s.heartbeats.silent(node);
            if silent && !was {
                tracing::info!(
                    node,
                    "its kubelet has fallen silent (Lease not renewed): its addresses are planned without waiting for its speaker"
                );
            }
            changed |= silent != was;
        }
        if changed {
            self.replan(&mut s, "node-heartbeat", Instant::now());
        }
    }

    /// The nodes whose heartbeats matter now: while settling, the last
    /// announcers of unclaimed layer-2 addresses whose speakers are not
    /// back. Empty once settled.
    pub fn awaited_owners(&self) -> watch::Receiver<Arc<BTreeSet<String>>> {
        self.awaited_tx.subscribe()
    }

    /// Publishes [`Core::awaited_owners`] when it changed.
    pub(super) fn publish_awaited(&self, s: &State) {
        let now: BTreeSet<String> = if s.settled {
            BTreeSet::new()
        } else {
            Awaited::of(s).owners(s)
        };
        self.awaited_tx.send_if_modified(|cur| {
            let changed = **cur != now;
            if changed && !now.is_empty() {
                tracing::info!(nodes = ?now, "unclaimed addresses wait for the speakers of their last announcers' nodes");
            }
            if changed {
                *cur = Arc::new(now);
            }
            changed
        });
    }

    /// A deadline of the settle period passed: the unclaimed addresses no
    /// speaker is awaited for are planned, and the period ends if it is over.
    pub fn settle_deadline(&self) {
        let mut s = self.lock();
        if s.settled {
            return;
        }
        self.replan(&mut s, "settled", Instant::now());
    }
}

/// Whether the period (not its hard end) has passed at `now`.
pub(super) fn period_over(s: &State, now: Instant) -> bool {
    s.hold_until.is_some_and(|t| now >= t)
}

/// Ends the period: plans go out as made from now on.
pub(super) fn end(s: &mut State) {
    s.settled = true;
    s.hold_until = None;
    s.claimed.clear();
    s.last_owners.clear();
    s.heartbeats = Heartbeats::default();
    tracing::info!(speakers = s.speakers.len(), "settled: planning");
}

/// Ready nodes (that could announce) whose speaker is not back, and of
/// those the ones whose kubelet is not silent: addresses wait past the
/// period only for these.
pub(super) struct Awaited<'a> {
    nodes: BTreeSet<&'a str>,
    alive: BTreeSet<&'a str>,
}

impl<'a> Awaited<'a> {
    pub(super) fn of(s: &'a State) -> Self {
        let nodes: BTreeSet<&str> = s
            .inputs
            .nodes
            .iter()
            .filter(|n| planner::awaited(n) && !s.speakers.contains_key(&n.name))
            .map(|n| n.name.as_str())
            .collect();
        let alive = nodes
            .iter()
            .copied()
            .filter(|n| !s.heartbeats.silent(n))
            .collect();
        Awaited { nodes, alive }
    }

    /// The awaited node `ip` was last announced by, if no connected
    /// speaker claims it.
    fn last_owner<'s>(&self, s: &'s State, ip: &IpAddr) -> Option<&'s str> {
        let claimed = s
            .claimed
            .get(ip)
            .is_some_and(|n| s.speakers.contains_key(n));
        if claimed {
            return None;
        }
        s.last_owners
            .get(ip)
            .map(String::as_str)
            .filter(|n| self.nodes.contains(n))
    }

    /// Whether `ip`, claimed by no connected speaker, was last announced
    /// by a node whose speaker is awaited and whose kubelet is not silent.
    pub(super) fn address(&self, s: &State, ip: &IpAddr) -> bool {
        !self.alive.is_empty()
            && self
                .last_owner(s, ip)
                .is_some_and(|n| self.alive.contains(n))
    }

    /// Whether `ip`, claimed by no connected speaker, was last announced
    /// by an awaited node whose kubelet is silent: most likely gone.
    pub(super) fn gone(&self, s: &State, ip: &IpAddr) -> bool {
        self.last_owner(s, ip)
            .is_some_and(|n| !self.alive.contains(n))
    }

    fn l2_addresses(s: &State) -> impl Iterator<Item = &IpAddr> {
        s.inputs
            .units
            .iter()
            .filter(|u| matches!(u.how, How::L2 { .. }))
            .flat_map(|u| &u.ips)
    }

    /// Whether any layer-2 address awaits its last announcer.
    fn any_address(&self, s: &State) -> bool {
        !self.alive.is_empty() && Self::l2_addresses(s).any(|ip| self.address(s, ip))
    }

    /// The awaited last announcers of unclaimed addresses, silent or not.
    fn owners(&self, s: &State) -> BTreeSet<String> {
        if self.nodes.is_empty() {
            return BTreeSet::new();
        }
        Self::l2_addresses(s)
            .filter_map(|ip| self.last_owner(s, ip))
            .map(str::to_string)
            .collect()
    }
}
