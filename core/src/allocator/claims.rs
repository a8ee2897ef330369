//! How a Service obtains new addresses: explicit IPs (with the older claim
//! winning a conflict), or pools in order of preference, sharing an address
//! where the sharing key allows.

use std::net::IpAddr;

use super::{Allocator, Failure, FailureReason};
use crate::candidates::{self, Unfit};
use crate::ipam::{ClaimError, Family};
use crate::request::{Request, ServiceKey};

impl Allocator {
    pub(super) fn claim_explicit(
        &mut self,
        req: &Request,
        missing: &[Family],
        warnings: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let mut taken = Vec::new();
        for ip in req
            .ips
            .iter()
            .filter(|ip| missing.contains(&Family::of(ip)))
        {
            match self.claim_one_explicit(req, ip, warnings) {
                Ok(()) => taken.push(*ip),
                Err(f) => {
                    for t in &taken {
                        self.unhold(&req.key, t);
                    }
                    return Err(f);
                }
            }
        }
        // Families the Service wants but named no address for come from the
        // same pool as its explicit ones.
        let still: Vec<Family> = missing
            .iter()
            .copied()
            .filter(|f| !req.ips.iter().any(|ip| Family::of(ip) == *f))
            .collect();
        if !still.is_empty() {
            let keep = self.held.get(&req.key).cloned().unwrap_or_default();
            return self.allocate_from_pools(req, &keep, &still, warnings);
        }
        Ok(())
    }

    fn claim_one_explicit(
        &mut self,
        req: &Request,
        ip: &IpAddr,
        warnings: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let Some(pool) = self.pool_of(ip) else {
            return Err(Failure(
                FailureReason::InvalidRequest,
                format!("requested address {ip} is in no AddressPool; pick one inside a pool"),
            ));
        };
        if let Some(want) = &req.pool
            && *want != pool
        {
            return Err(Failure(
                FailureReason::InvalidRequest,
                format!(
                    "requested address {ip} is in AddressPool {pool}, not in {want} named by barelb.io/pool"
                ),
            ));
        }
        self.check_policy(req, &pool, false, warnings)?;
        let holders: Vec<ServiceKey> = self
            .holders
            .get(ip)
            .map(|h| h.iter().filter(|k| **k != req.key).cloned().collect())
            .unwrap_or_default();
        if holders.is_empty() {
            return match self.pools.get_mut(&pool).map(|p| p.ipam.claim(ip)) {
                Some(Ok(())) | Some(Err(ClaimError::InUse)) => {
                    self.hold(&req.key, *ip);
                    Ok(())
                }
                Some(Err(ClaimError::Avoided)) => Err(Failure(
                    FailureReason::InvalidRequest,
                    format!(
                        "requested address {ip} ends in .0 or .255 and AddressPool {pool} sets avoidBuggyIPs; pick another"
                    ),
                )),
                _ => Err(Failure(
                    FailureReason::InvalidRequest,
                    format!("requested address {ip} is in no AddressPool"),
                )),
            };
        }
        if self.share_check(req, ip, Some(&pool)).is_ok() {
            self.hold(&req.key, *ip);
            return Ok(());
        }
        // Two Services want one address without a valid sharing key: the
        // older explicit claim wins; an address handed out automatically
        // stays where it is.
        let me = (req.created, &req.key);
        let newer_explicit = holders.iter().all(|h| {
            self.meta
                .get(h)
                .is_some_and(|m| m.explicit.contains(ip) && (m.created, h) > me)
        });
        if newer_explicit {
            for h in &holders {
                self.unhold(h, ip);
                self.evicted.push(h.clone());
            }
            self.hold(&req.key, *ip);
            if let Some(p) = self.pools.get_mut(&pool) {
                let _ = p.ipam.claim(ip);
            }
            return Ok(());
        }
        let why = self
            .share_check(req, ip, Some(&pool))
            .err()
            .unwrap_or_default();
        Err(Failure(
            FailureReason::IpInUse,
            format!(
                "requested address {ip} is used by {} ({why}); pick another address or share it with a matching barelb.io/sharing-key",
                holders[0]
            ),
        ))
    }

    pub(super) fn allocate_from_pools(
        &mut self,
        req: &Request,
        keep: &[IpAddr],
        missing: &[Family],
        warnings: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let automatic = req.pool.is_none() && req.ips.is_empty();
        let anchored = keep.iter().find_map(|ip| self.pool_of(ip));
        let candidates: Vec<String> = match (&req.pool, &anchored) {
            (Some(p), _) => vec![p.clone()],
            (None, Some(p)) => vec![p.clone()],
            (None, None) => candidates::auto_assign_order(self.pools.values().map(|p| &p.def))
                .into_iter()
                .map(|p| p.name.clone())
                .collect(),
        };
        let required = candidates::required_families(req, missing);
        let mut last_failure: Option<Failure> = None;
        let mut saw_family = false;
        for name in &candidates {
            let Some(state) = self.pools.get(name) else {
                continue;
            };
            match candidates::fitness(&state.def, &state.ready, &required) {
                Ok(()) => {}
                Err(Unfit::NotReady(why)) => {
                    last_failure.get_or_insert(Failure(
                        FailureReason::NoEligiblePool,
                        format!("AddressPool {name} is not Ready: {why}"),
                    ));
                    continue;
                }
                Err(Unfit::MissingFamily) => continue,
            }
            saw_family = true;
            let mut pool_warnings = Vec::new();
            if let Err(f) = self.check_policy(req, name, automatic, &mut pool_warnings) {
                if last_failure
                    .as_ref()
                    .is_none_or(|l| l.0 != FailureReason::PolicyDenied)
                {
                    last_failure = Some(f);
                }
                continue;
            }
            match self.take_from_pool(req, name, missing, &required) {
                Ok(()) => {
                    warnings.extend(pool_warnings);
                    return Ok(());
                }
                Err(f) => {
                    if last_failure.is_none() || f.0 == FailureReason::IpInUse {
                        last_failure = Some(f);
                    }
                }
            }
        }
        let fams = required
            .iter()
            .map(|f| f.k8s_name())
            .collect::<Vec<_>>()
            .join("+");
        Err(match last_failure {
            Some(f) => f,
            None if !saw_family && req.pool.is_some() => Failure(
                FailureReason::NoEligiblePool,
                format!(
                    "AddressPool {} has no {fams} addresses; change the Service's ipFamilies or the pool",
                    candidates.join(",")
                ),
            ),
            None => Failure(
                FailureReason::NoEligiblePool,
                format!(
                    "no AddressPool with autoAssign offers {fams}; create one or name a pool with barelb.io/pool"
                ),
            ),
        })
    }

    /// Takes one address per missing family from `pool` (sharing where the
    /// key allows); all required families or nothing.
    fn take_from_pool(
        &mut self,
        req: &Request,
        pool: &str,
        missing: &[Family],
        required: &[Family],
    ) -> Result<(), Failure> {
        let mut taken = Vec::new();
        for family in missing {
            let got = match self.shared_address(req, pool, *family)? {
                Some(ip) => Some(ip),
                None => self
                    .pools
                    .get_mut(pool)
                    .and_then(|p| p.ipam.allocate(*family)),
            };
            match got {
                Some(ip) => {
                    self.hold(&req.key, ip);
                    taken.push(ip);
                }
                None if required.contains(family) => {
                    for ip in &taken {
                        self.unhold(&req.key, ip);
                    }
                    return Err(Failure(
                        FailureReason::PoolExhausted,
                        format!(
                            "AddressPool {pool} has no free {} address; widen the pool or free an address",
                            family.k8s_name()
                        ),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// An address of `family` in `pool` held by Services with the same
    /// sharing key, if the sharing rules allow joining them.
    fn shared_address(
        &self,
        req: &Request,
        pool: &str,
        family: Family,
    ) -> Result<Option<IpAddr>, Failure> {
        let Some(key) = &req.sharing_key else {
            return Ok(None);
        };
        let mut refusal = None;
        let mut group_ips: Vec<IpAddr> = self
            .holders
            .iter()
            .filter(|(ip, hs)| {
                Family::of(ip) == family
                    && hs.iter().any(|h| {
                        *h != req.key
                            && self.meta.get(h).and_then(|m| m.sharing_key.as_ref()) == Some(key)
                    })
            })
            .map(|(ip, _)| *ip)
            .filter(|ip| self.pool_of(ip).as_deref() == Some(pool))
            .collect();
        group_ips.sort();
        for ip in group_ips {
            match self.share_check(req, &ip, Some(pool)) {
                Ok(()) => return Ok(Some(ip)),
                Err(why) => {
                    refusal = Some(format!(
                        "cannot share {ip} under sharing key {key:?}: {why}"
                    ))
                }
            }
        }
        match refusal {
            Some(msg) => Err(Failure(FailureReason::IpInUse, msg)),
            None => Ok(None),
        }
    }
}
