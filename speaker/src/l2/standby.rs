//! Standing by for other nodes' layer-2 addresses while the operator is
//! away: the decision, as plain data in and out (the prober in
//! `agent::standby` sends the probes and reports what it hears).
//!
//! The operator names each address's standby (the planner's runner-up).
//! While connected, a standby does nothing: the operator moves addresses.
//! When its stream is lost the operator may be gone with the owner's node
//! (the leader ran there), and a new leader comes only once the Lease
//! expires (~15 s). So from the moment the stream is lost the standby asks
//! for one address of each owner by ARP probe (RFC 5227: sender address
//! 0.0.0.0, no cache learns from it; for IPv6 a Neighbor Solicitation from
//! the unspecified address), and takes every address of an owner
//! over when that owner has answered nothing for [`SILENCE`] and
//! [`MIN_UNANSWERED`] probes, **while other hosts are still heard on the
//! LAN** — a standby cut off itself hears nobody and takes nothing. An
//! owner that is alive answers (its speaker is fail-static), so an
//! operator or apiserver outage moves nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Gap between probes of one owner for the first [`FAST_FOR`] after the
/// stream is lost; [`SLOW_PROBE`] after (a long operator outage should not
/// keep every standby probing every owner four times a second).
pub const FAST_PROBE: Duration = Duration::from_millis(250);
pub const FAST_FOR: Duration = Duration::from_secs(30);
pub const SLOW_PROBE: Duration = Duration::from_secs(2);

/// How long an owner must have answered nothing.
pub const SILENCE: Duration = Duration::from_secs(1);

/// How many probes it must have left unanswered meanwhile.
pub const MIN_UNANSWERED: u32 = 3;

/// A layer-2 address this node stands by for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The owner's node name.
    pub owner: String,
    pub interfaces: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Owner {
    heard: Option<Instant>,
    unanswered: u32,
    probed: Option<Instant>,
}

/// What a standby knows of the owners it stands by for.
#[derive(Debug, Default)]
pub struct Watch {
    /// Since when the stream is lost; None while connected.
    away_since: Option<Instant>,
    owners: BTreeMap<String, Owner>,
    /// When another host was last heard on the LAN.
    lan_heard: Option<Instant>,
}

impl Watch {
    /// The stream is up: the operator decides; everything heard is forgotten.
    pub fn connected(&mut self) {
        self.away_since = None;
        self.owners.clear();
    }

    /// The stream is down (since `now`, unless it was already).
    pub fn away(&mut self, now: Instant) {
        self.away_since.get_or_insert(now);
    }

    pub fn is_away(&self) -> bool {
        self.away_since.is_some()
    }

    /// Some host claimed or answered for `ip`: its owner (or whoever
    /// holds it now) is alive.
    pub fn answered(&mut self, ip: &IpAddr, standbys: &BTreeMap<IpAddr, Standing>, now: Instant) {
        if let Some(s) = standbys.get(ip) {
            let o = self.owners.entry(s.owner.clone()).or_default();
            o.heard = Some(now);
            o.unanswered = 0;
        }
        self.lan_heard = Some(now);
    }

    /// A frame from another host arrived.
    pub fn heard_lan(&mut self, now: Instant) {
        self.lan_heard = Some(now);
    }

    /// The addresses to probe now: one per owner (its lowest address),
    /// each owner at its pace.
    pub fn probes(&mut self, standbys: &BTreeMap<IpAddr, Standing>, now: Instant) -> Vec<IpAddr> {
        let Some(since) = self.away_since else {
            return Vec::new();
        };
        let every = if now.duration_since(since) < FAST_FOR {
            FAST_PROBE
        } else {
            SLOW_PROBE
        };
        let mut first: BTreeMap<&str, IpAddr> = BTreeMap::new();
        for (ip, s) in standbys {
            first.entry(s.owner.as_str()).or_insert(*ip);
        }
        let mut out = Vec::new();
        for (owner, ip) in first {
            let o = self.owners.entry(owner.to_string()).or_default();
            if o.probed.is_none_or(|p| now.duration_since(p) >= every) {
                o.probed = Some(now);
                o.unanswered += 1;
                out.push(ip);
            }
        }
        out
    }

    /// The addresses to take over now: every address of each owner that
    /// has been silent long enough while others were heard. Their owners
    /// are forgotten (the addresses leave the standby set).
    pub fn takeovers(
        &mut self,
        standbys: &BTreeMap<IpAddr, Standing>,
        now: Instant,
    ) -> BTreeSet<IpAddr> {
        let Some(since) = self.away_since else {
            return BTreeSet::new();
        };
        let lan_alive = self
            .lan_heard
            .is_some_and(|t| now.duration_since(t) < SILENCE);
        if !lan_alive {
            return BTreeSet::new();
        }
        let silent: BTreeSet<String> = self
            .owners
            .iter()
            .filter(|(_, o)| {
                let last = o.heard.map_or(since, |h| h.max(since));
                o.unanswered >= MIN_UNANSWERED && now.duration_since(last) >= SILENCE
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &silent {
            self.owners.remove(name);
        }
        standbys
            .iter()
            .filter(|(_, s)| silent.contains(&s.owner))
            .map(|(ip, _)| *ip)
            .collect()
    }
}

#[cfg(test)]
mod tests;
