//! The allocator: which Service holds which addresses, decided from pools,
//! requests and the policy seam. Plain Rust; the controller drives it.
//!
//! Rules (docs/allocation.md): addresses already held stay while they still
//! satisfy the request — an operator restart, a leader change or a pool edit
//! that keeps an address inside a pool never moves it, and an address left
//! outside every pool is kept and reported. New addresses come from explicit
//! IPs, else the named pool, else auto-assign pools the policy allows, by
//! priority then name, lowest free address first.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::ipam::{Family, PoolIpam};
use crate::policy::{Claim, Decision, PolicyCheck};
use crate::pools::{PoolDef, readiness};
use crate::request::{Request, ServiceKey};

mod claims;
mod holders;

#[cfg(test)]
mod tests;

use crate::sharing::{SharingMeta, compatible};
use holders::Holders;

/// Why a Service got no (or not all of its) addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    PoolExhausted,
    NoEligiblePool,
    PolicyDenied,
    InvalidRequest,
    IpInUse,
}

impl FailureReason {
    /// The reason string of events, conditions and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::PoolExhausted => "PoolExhausted",
            FailureReason::NoEligiblePool => "NoEligiblePool",
            FailureReason::PolicyDenied => "PolicyDenied",
            FailureReason::InvalidRequest => "InvalidRequest",
            FailureReason::IpInUse => "IPInUse",
        }
    }
}

/// The addresses a Service holds, in its family order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Pool of the first address; None when it is outside every pool.
    pub pool: Option<String>,
    pub ips: Vec<IpAddr>,
}

/// The result of reconciling one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every required family has an address. `note` says what is not ideal
    /// (an address outside every pool, a preferred family still missing).
    Allocated {
        alloc: Allocation,
        note: Option<String>,
        warnings: Vec<String>,
    },
    /// The request cannot be met; `kept` is what the Service still holds.
    Failed {
        reason: FailureReason,
        message: String,
        kept: Allocation,
    },
}

/// A Service's held addresses under its current request.
#[derive(Debug, Default)]
struct Held {
    /// Still what it asks for.
    fits: Vec<IpAddr>,
    /// No longer asked for (the request changed): kept until the new
    /// request is met.
    superseded: Vec<IpAddr>,
    /// Shared with another Service it may no longer share with.
    conflicting: Vec<IpAddr>,
}

struct Failure(FailureReason, String);

#[derive(Debug)]
struct PoolState {
    def: PoolDef,
    ipam: PoolIpam,
    ready: Result<(), String>,
}

/// Allocation state of the whole cluster.
#[derive(Debug)]
pub struct Allocator {
    pools: BTreeMap<String, PoolState>,
    held: HashMap<ServiceKey, Vec<IpAddr>>,
    holders: HashMap<IpAddr, Holders>,
    meta: HashMap<ServiceKey, SharingMeta>,
    policy: Arc<dyn PolicyCheck>,
    /// Services that lost an address to an older explicit claim and must be
    /// reconciled again.
    evicted: Vec<ServiceKey>,
}

impl Allocator {
    pub fn new(policy: Arc<dyn PolicyCheck>) -> Self {
        Allocator {
            pools: BTreeMap::new(),
            held: HashMap::new(),
            holders: HashMap::new(),
            meta: HashMap::new(),
            policy,
            evicted: Vec::new(),
        }
    }

    /// Replaces the policy seam (the CEL engine, once policies load).
    pub fn set_policy(&mut self, policy: Arc<dyn PolicyCheck>) {
        self.policy = policy;
    }

    /// Replaces the pool set. Held addresses stay held: each is claimed again
    /// from whichever pool now contains it, or kept outside every pool.
    pub fn set_pools(&mut self, defs: Vec<PoolDef>) {
        let ready = readiness(&defs);
        self.pools = defs
            .into_iter()
            .map(|def| {
                let ipam = PoolIpam::new(def.ranges.clone(), def.avoid_buggy_ips);
                let ready = ready.get(&def.name).cloned().unwrap_or(Ok(()));
                (def.name.clone(), PoolState { def, ipam, ready })
            })
            .collect();
        let ips: Vec<IpAddr> = self.holders.keys().copied().collect();
        for ip in ips {
            if let Some(name) = self.pool_of(&ip)
                && let Some(p) = self.pools.get_mut(&name)
            {
                // The pool was just built empty: a held address is free in it,
                // unless avoidBuggyIPs now excludes it (then it is kept unpooled).
                let _ = p.ipam.claim(&ip);
            }
        }
    }

    /// Takes the addresses a Service already has in its status, at start-up
    /// and before anything new is allocated. Call in order of precedence
    /// (creation time, then key): an address two Services claim without a
    /// valid sharing key stays with the first.
    pub fn restore(&mut self, req: &Request, ips: &[IpAddr]) {
        self.meta.insert(req.key.clone(), SharingMeta::of(req));
        for ip in ips {
            if self.held.get(&req.key).is_some_and(|h| h.contains(ip)) {
                continue;
            }
            let pool = self.pool_of(ip);
            if self.share_check(req, ip, pool.as_deref()).is_ok() {
                self.hold(&req.key, *ip);
            }
        }
    }

    /// What `key` holds now.
    pub fn current(&self, key: &ServiceKey) -> Allocation {
        let ips = self.held.get(key).cloned().unwrap_or_default();
        Allocation {
            pool: ips.first().and_then(|ip| self.pool_of(ip)),
            ips,
        }
    }

    /// Frees everything `key` holds (the Service was deleted or stopped qualifying).
    pub fn release(&mut self, key: &ServiceKey) -> Vec<IpAddr> {
        let ips = self.held.remove(key).unwrap_or_default();
        for ip in &ips {
            self.unhold_ip(key, ip);
        }
        self.meta.remove(key);
        ips
    }

    /// Services that lost an address since the last call and need another pass.
    pub fn take_evicted(&mut self) -> Vec<ServiceKey> {
        std::mem::take(&mut self.evicted)
    }

    /// A Service whose request cannot be read keeps what it has.
    pub fn invalid(&self, key: &ServiceKey, message: String) -> Outcome {
        Outcome::Failed {
            reason: FailureReason::InvalidRequest,
            message,
            kept: self.current(key),
        }
    }

    /// Brings `req.key`'s addresses in line with its request.
    pub fn reconcile(&mut self, req: &Request) -> Outcome {
        self.meta.insert(req.key.clone(), SharingMeta::of(req));
        if let Some(pool) = &req.pool
            && !self.pools.contains_key(pool)
        {
            return self.fail_keep(req, FailureReason::InvalidRequest, format!(
                    "AddressPool {pool} (annotation barelb.io/pool) does not exist; name an existing pool"
                ));
        }
        let Held {
            fits: keep,
            superseded,
            conflicting,
        } = self.sort_held(req);
        // An address it may no longer share goes at once (two holders
        // without a valid key would be a duplicate). What the changed
        // request no longer asks for goes only once the request is met:
        // a change that fails (a pool its policy forbids, a full pool, an
        // address in use) leaves the Service what it had, as the webhook's
        // denial of that change would have.
        for ip in &conflicting {
            self.unhold(&req.key, ip);
        }

        let missing: Vec<Family> = req
            .families
            .iter()
            .copied()
            .filter(|f| !keep.iter().any(|ip| Family::of(ip) == *f))
            .collect();
        if missing.is_empty() {
            self.unhold_all(&req.key, &superseded);
            return self.allocated(req, Vec::new());
        }
        let mut warnings = Vec::new();
        let result = if !req.ips.is_empty() {
            self.claim_explicit(req, &missing, &mut warnings)
        } else {
            self.allocate_from_pools(req, &keep, &missing, &mut warnings)
        };
        match result {
            Ok(()) => {
                self.unhold_all(&req.key, &superseded);
                self.allocated(req, warnings)
            }
            Err(Failure(reason, message)) => Outcome::Failed {
                reason,
                message,
                kept: self.current(&req.key),
            },
        }
    }

    fn unhold_all(&mut self, key: &ServiceKey, ips: &[IpAddr]) {
        for ip in ips {
            self.unhold(key, ip);
        }
    }

    fn fail_keep(&self, req: &Request, reason: FailureReason, message: String) -> Outcome {
        Outcome::Failed {
            reason,
            message,
            kept: self.current(&req.key),
        }
    }

    fn allocated(&self, req: &Request, warnings: Vec<String>) -> Outcome {
        let mut alloc = self.current(&req.key);
        alloc
            .ips
            .sort_by_key(|ip| req.families.iter().position(|f| *f == Family::of(ip)));
        alloc.pool = alloc.ips.first().and_then(|ip| self.pool_of(ip));
        let mut notes = Vec::new();
        for ip in &alloc.ips {
            if self.pool_of(ip).is_none() {
                notes.push(format!(
                    "{ip} is outside every AddressPool after a pool edit; the Service keeps it until it is deleted or asks for another"
                ));
            }
        }
        for f in &req.families {
            if !alloc.ips.iter().any(|ip| Family::of(ip) == *f) {
                notes.push(format!(
                    "no {} address is free for this PreferDualStack Service yet; it is added when a pool has room",
                    f.k8s_name()
                ));
            }
        }
        Outcome::Allocated {
            alloc,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            warnings,
        }
    }

    /// Sorts what `req.key` holds by what `req` makes of it.
    fn sort_held(&self, req: &Request) -> Held {
        let mut held = Held::default();
        for ip in self.held.get(&req.key).cloned().unwrap_or_default() {
            let others = self
                .holders
                .get(&ip)
                .map(|h| h.iter().filter(|k| **k != req.key).count())
                .unwrap_or(0);
            let shareable = others == 0
                || self
                    .share_check(req, &ip, self.pool_of(&ip).as_deref())
                    .is_ok();
            let asked = req.families.contains(&Family::of(&ip))
                && (req.ips.is_empty() || req.ips.contains(&ip))
                && match (&req.pool, self.pool_of(&ip)) {
                    // A named pool must hold the address; outside every pool it is kept.
                    (Some(want), Some(have)) => *want == have,
                    _ => true,
                };
            match (shareable, asked) {
                (false, _) => held.conflicting.push(ip),
                (true, true) => held.fits.push(ip),
                (true, false) => held.superseded.push(ip),
            }
        }
        held
    }

    fn share_check(&self, req: &Request, ip: &IpAddr, pool: Option<&str>) -> Result<(), String> {
        let cross_ns = pool
            .and_then(|p| self.pools.get(p))
            .is_some_and(|p| p.def.allow_cross_namespace_sharing);
        let me = SharingMeta::of(req);
        for h in self
            .holders
            .get(ip)
            .into_iter()
            .flatten()
            .filter(|h| **h != req.key)
        {
            let Some(other) = self.meta.get(h) else {
                continue;
            };
            compatible(&me, other, cross_ns).map_err(|why| format!("{h}: {why}"))?;
        }
        Ok(())
    }

    fn check_policy(
        &self,
        req: &Request,
        pool: &str,
        automatic: bool,
        warnings: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let Some(state) = self.pools.get(pool) else {
            return Ok(());
        };
        let claim = Claim {
            request: req,
            pool: &state.def,
            automatic,
            ips: &req.ips,
        };
        match self.policy.check(&claim) {
            Decision::Allow => Ok(()),
            Decision::Warn(w) => {
                warnings.push(w);
                Ok(())
            }
            Decision::Deny(why) => Err(Failure(FailureReason::PolicyDenied, why.message)),
        }
    }

    /// The pool that owns `ip`: a Ready pool containing it, else any pool
    /// containing it.
    fn pool_of(&self, ip: &IpAddr) -> Option<String> {
        let containing = self
            .pools
            .iter()
            .filter(|(_, p)| p.ipam.contains(ip))
            .map(|(name, p)| (name.as_str(), p.ready.is_ok()));
        crate::pools::owner(containing).map(str::to_string)
    }

    fn hold(&mut self, key: &ServiceKey, ip: IpAddr) {
        let first = self.holders.get(&ip).is_none_or(Holders::is_empty);
        self.holders.entry(ip).or_default().insert(key.clone());
        let held = self.held.entry(key.clone()).or_default();
        if !held.contains(&ip) {
            held.push(ip);
        }
        if first
            && let Some(name) = self.pool_of(&ip)
            && let Some(p) = self.pools.get_mut(&name)
        {
            // Already claimed when allocated from the pool; a restored
            // or explicit address is claimed here.
            let _ = p.ipam.claim(&ip);
        }
    }

    fn unhold(&mut self, key: &ServiceKey, ip: &IpAddr) {
        if let Some(h) = self.held.get_mut(key) {
            h.retain(|x| x != ip);
            if h.is_empty() {
                self.held.remove(key);
            }
        }
        self.unhold_ip(key, ip);
    }

    fn unhold_ip(&mut self, key: &ServiceKey, ip: &IpAddr) {
        let Some(hs) = self.holders.get_mut(ip) else {
            return;
        };
        hs.remove(key);
        if hs.is_empty() {
            self.holders.remove(ip);
            if let Some(name) = self.pool_of(ip)
                && let Some(p) = self.pools.get_mut(&name)
            {
                p.ipam.release(ip);
            }
        }
    }

    /// Capacity of a pool: `(family, total, allocated)` for each family it has.
    pub fn usage(&self, pool: &str) -> Vec<(Family, u128, u128)> {
        let Some(p) = self.pools.get(pool) else {
            return Vec::new();
        };
        [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| p.ipam.has_family(*f))
            .map(|f| (f, p.ipam.total(f), p.ipam.allocated(f)))
            .collect()
    }

    /// Whether a pool is in force, or why not.
    pub fn readiness(&self, pool: &str) -> Option<Result<(), String>> {
        self.pools.get(pool).map(|p| p.ready.clone())
    }

    /// Services holding addresses, with what they hold.
    pub fn holdings(&self) -> impl Iterator<Item = (&ServiceKey, &Vec<IpAddr>)> {
        self.held.iter()
    }

    /// Pool names.
    pub fn pool_names(&self) -> impl Iterator<Item = &String> {
        self.pools.keys()
    }
}
