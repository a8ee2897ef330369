//! Services of our class: the request must parse, a named pool must exist,
//! explicit addresses must lie in a pool (the named one, if any) and not be
//! held by a Service they may not share with, and every pool the Service
//! could draw from must be allowed by policy.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::{Review, View};
use barelb_core::candidates;
use barelb_core::policy::{Claim, Decision};
use barelb_core::pools::PoolDef;
use barelb_core::request::{self, Request, ServiceRecord};
use barelb_core::sharing::{SharingMeta, compatible};

/// Reviews a Service create or update (`old` on update).
pub fn review_service(view: &View, svc: &Service, old: Option<&Service>) -> Review {
    let record = ServiceRecord::of(svc);
    if !request::qualifies(&record, &view.class) {
        return Review::allow();
    }
    let key = &record.key;
    if !view.synced {
        return Review::deny(format!(
            "Service {key}: the barelb operator is still loading pools and policies; retry in a few seconds"
        ));
    }
    let req = match record.request() {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Review::deny(format!("Service {key}: {e}")),
        // Unreachable: a qualifying Service is a LoadBalancer.
        None => return Review::allow(),
    };
    if let Some(old) = old.map(ServiceRecord::of)
        && request::qualifies(&old, &view.class)
        && matches!(old.request(), Some(Ok(o)) if same_claim(o, req))
    {
        // An edit that does not touch the claim (a port name, a selector)
        // is not the moment to re-litigate an address the Service holds.
        return Review::allow();
    }
    let mut review = Review::allow();
    if let Some(name) = &req.pool
        && view.pool(name).is_none()
    {
        return Review::deny(format!(
            "Service {key}: AddressPool {name} (annotation barelb.io/pool) does not exist; name an existing pool (kubectl get addresspools)"
        ));
    }
    let outcome = if !req.ips.is_empty() {
        explicit(view, req, &mut review)
    } else if let Some(name) = &req.pool {
        match view.pool(name) {
            Some(pool) => check(view, req, pool, false, &mut review),
            None => Ok(()),
        }
    } else {
        automatic(view, req, &mut review)
    };
    if let Err(denial) = outcome {
        review.denial = Some(denial);
    }
    review
}

/// Whether two requests claim the same thing (so an update may skip review).
fn same_claim(a: &Request, b: &Request) -> bool {
    a.pool == b.pool
        && a.ips == b.ips
        && a.sharing_key == b.sharing_key
        && a.families == b.families
        && a.require_all_families == b.require_all_families
        && a.ports == b.ports
        && a.external_traffic_policy == b.external_traffic_policy
        && a.labels == b.labels
        && a.class == b.class
}

fn explicit(view: &View, req: &Request, review: &mut Review) -> Result<(), String> {
    let key = &req.key;
    for ip in &req.ips {
        let Some(pool) = view.pool_of(ip) else {
            return Err(format!(
                "Service {key}: requested address {ip} is in no AddressPool; pick an address inside a pool (kubectl get addresspools)"
            ));
        };
        if let Some(want) = &req.pool
            && *want != pool.name
        {
            return Err(format!(
                "Service {key}: requested address {ip} is in AddressPool {}, not in {want} named by barelb.io/pool; pick an address in {want} or drop one of the two",
                pool.name
            ));
        }
        check(view, req, pool, false, review)?;
        shareable(view, req, ip, pool)?;
    }
    Ok(())
}

/// Another Service holding `ip` must be one this Service may share with.
fn shareable(view: &View, req: &Request, ip: &IpAddr, pool: &PoolDef) -> Result<(), String> {
    let me = SharingMeta::of(req);
    for other in view.holders.get(ip).into_iter().flatten() {
        if other.key == req.key {
            continue;
        }
        compatible(&me, &SharingMeta::of(other), pool.allow_cross_namespace_sharing).map_err(
            |why| {
                format!(
                    "Service {}: requested address {ip} is held by Service {} and cannot be shared ({why}); pick another address or give both the same barelb.io/sharing-key",
                    req.key, other.key
                )
            },
        )?;
    }
    Ok(())
}

pub(super) fn automatic(view: &View, req: &Request, review: &mut Review) -> Result<(), String> {
    let required = candidates::required_families(req, &req.families);
    let not_ready = Err(String::new());
    let candidates: Vec<&PoolDef> = candidates::auto_assign_order(&view.pools)
        .into_iter()
        .filter(|p| {
            let ready = view.ready.get(&p.name).unwrap_or(&not_ready);
            candidates::fitness(p, ready, &required).is_ok()
        })
        .collect();
    if candidates.is_empty() {
        // Not a policy matter: a pool may be added later. The allocator
        // reports it on the Service.
        let families: Vec<&str> = required.iter().map(|f| f.k8s_name()).collect();
        review.warnings.push(format!(
            "no Ready auto-assign AddressPool serves {}; the Service stays pending until one does",
            families.join("+")
        ));
        return Ok(());
    }
    let mut first_denial = None;
    for pool in candidates {
        let mut scratch = Review::allow();
        match check(view, req, pool, true, &mut scratch) {
            Ok(()) => {
                review.warnings.extend(scratch.warnings);
                return Ok(());
            }
            Err(d) => {
                if first_denial.is_none() {
                    first_denial = Some(d);
                    review.denied_by = scratch.denied_by;
                }
            }
        }
    }
    Err(first_denial.unwrap_or_default())
}

/// Asks the policy about a claim on `pool`.
pub(super) fn check(
    view: &View,
    req: &Request,
    pool: &PoolDef,
    automatic: bool,
    review: &mut Review,
) -> Result<(), String> {
    let claim = Claim {
        request: req,
        pool,
        automatic,
        ips: &req.ips,
    };
    match view.policy.check(&claim) {
        Decision::Allow => Ok(()),
        Decision::Warn(w) => {
            review.warnings.push(w);
            Ok(())
        }
        Decision::Deny(d) => {
            review.denied_by = d.policy;
            Err(format!("Service {}: {}", req.key, d.message))
        }
    }
}
