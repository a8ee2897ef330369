use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::ipam::IpRange;
use crate::policy::AllowAll;
use crate::request::PortKey;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(name: &str, entries: &[&str]) -> PoolDef {
    PoolDef {
        name: name.into(),
        ranges: entries.iter().map(|e| IpRange::parse(e).unwrap()).collect(),
        entries: entries.iter().map(|e| e.to_string()).collect(),
        auto_assign: true,
        avoid_buggy_ips: false,
        priority: 100,
        allow_cross_namespace_sharing: false,
        labels: Default::default(),
        created: Some(Timestamp::from_second(1_000).unwrap()),
        generation: Some(1),
        invalid: vec![],
    }
}

fn req(ns: &str, name: &str, created: i64) -> Request {
    Request {
        key: ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        },
        created: Some(Timestamp::from_second(created).unwrap()),
        families: vec![Family::V4],
        require_all_families: true,
        pool: None,
        ips: vec![],
        sharing_key: None,
        ports: vec![PortKey {
            protocol: "TCP".into(),
            port: 80,
        }],
        port_names: vec![String::new()],
        external_traffic_policy: "Cluster".into(),
        labels: Default::default(),
        annotations: Default::default(),
        class: String::new(),
    }
}

fn alloc(pools: Vec<PoolDef>) -> Allocator {
    let mut a = Allocator::new(Arc::new(AllowAll));
    a.set_pools(pools);
    a
}

fn ips_of(o: &Outcome) -> Vec<IpAddr> {
    match o {
        Outcome::Allocated { alloc, .. } => alloc.ips.clone(),
        Outcome::Failed { kept, .. } => kept.ips.clone(),
    }
}

fn reason(o: &Outcome) -> Option<FailureReason> {
    match o {
        Outcome::Failed { reason, .. } => Some(*reason),
        Outcome::Allocated { .. } => None,
    }
}

#[test]
fn lowest_free_address_by_priority_then_name() {
    let mut hi = pool("b-high", &["10.0.2.0/30"]);
    hi.priority = 10;
    let mut a = alloc(vec![
        pool("a-default", &["10.0.1.0/30"]),
        hi,
        pool("c-default", &["10.0.3.0/30"]),
    ]);
    assert_eq!(ips_of(&a.reconcile(&req("ns", "s1", 1))), [ip("10.0.2.0")]);
    assert_eq!(ips_of(&a.reconcile(&req("ns", "s2", 2))), [ip("10.0.2.1")]);
    // Reconciling again changes nothing.
    assert_eq!(ips_of(&a.reconcile(&req("ns", "s1", 1))), [ip("10.0.2.0")]);
    for i in 3..5 {
        a.reconcile(&req("ns", &format!("s{i}"), i));
    }
    // b-high is full: ties at priority 100 go by name.
    assert_eq!(ips_of(&a.reconcile(&req("ns", "s5", 5))), [ip("10.0.1.0")]);
}

#[test]
fn named_pool_and_auto_assign_false() {
    let mut manual = pool("manual", &["10.0.9.0/30"]);
    manual.auto_assign = false;
    let mut a = alloc(vec![manual]);
    assert_eq!(
        reason(&a.reconcile(&req("ns", "auto", 1))),
        Some(FailureReason::NoEligiblePool)
    );
    let mut r = req("ns", "named", 2);
    r.pool = Some("manual".into());
    assert_eq!(ips_of(&a.reconcile(&r)), [ip("10.0.9.0")]);
    r.pool = Some("nope".into());
    let o = a.reconcile(&r);
    assert_eq!(reason(&o), Some(FailureReason::InvalidRequest));
    assert_eq!(ips_of(&o), [ip("10.0.9.0")], "keeps what it had");
}

#[test]
fn explicit_ips_and_conflicts_go_to_the_older_service() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24", "2001:db8::/120"])]);
    let mut newer = req("ns", "newer", 20);
    newer.ips = vec![ip("10.0.0.50")];
    assert_eq!(ips_of(&a.reconcile(&newer)), [ip("10.0.0.50")]);
    let mut older = req("ns", "older", 10);
    older.ips = vec![ip("10.0.0.50")];
    assert_eq!(ips_of(&a.reconcile(&older)), [ip("10.0.0.50")]);
    assert_eq!(a.take_evicted(), [newer.key.clone()]);
    let o = a.reconcile(&newer);
    assert_eq!(reason(&o), Some(FailureReason::IpInUse));
    assert!(
        matches!(&o, Outcome::Failed { message, .. } if message.contains("ns/older")),
        "{o:?}"
    );
    // An address handed out automatically is not taken away.
    let auto = req("ns", "auto", 30);
    let auto_ip = ips_of(&a.reconcile(&auto))[0];
    let mut oldest = req("ns", "oldest", 1);
    oldest.ips = vec![auto_ip];
    assert_eq!(reason(&a.reconcile(&oldest)), Some(FailureReason::IpInUse));
    // Outside every pool.
    let mut outside = req("ns", "outside", 2);
    outside.ips = vec![ip("192.0.2.1")];
    assert_eq!(
        reason(&a.reconcile(&outside)),
        Some(FailureReason::InvalidRequest)
    );
}

#[test]
fn sharing_with_a_key_and_its_refusals() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])]);
    let mut web = req("ns", "web", 1);
    web.sharing_key = Some("k".into());
    let shared = ips_of(&a.reconcile(&web))[0];
    let mut dns = req("ns", "dns", 2);
    dns.sharing_key = Some("k".into());
    dns.ports = vec![PortKey {
        protocol: "UDP".into(),
        port: 53,
    }];
    assert_eq!(ips_of(&a.reconcile(&dns)), [shared]);
    // Same port: refused.
    let mut clash = req("ns", "clash", 3);
    clash.sharing_key = Some("k".into());
    let o = a.reconcile(&clash);
    assert_eq!(reason(&o), Some(FailureReason::IpInUse), "{o:?}");
    // Other namespace: refused unless the pool allows it.
    let mut other_ns = req("other", "svc", 4);
    other_ns.sharing_key = Some("k".into());
    other_ns.ports = vec![PortKey {
        protocol: "TCP".into(),
        port: 443,
    }];
    assert_eq!(
        reason(&a.reconcile(&other_ns)),
        Some(FailureReason::IpInUse)
    );
    // Explicit IP without the key: in use.
    let mut grab = req("ns", "grab", 0);
    grab.ips = vec![shared];
    grab.ports = vec![PortKey {
        protocol: "TCP".into(),
        port: 8080,
    }];
    assert_eq!(reason(&a.reconcile(&grab)), Some(FailureReason::IpInUse));
    // Releasing one sharer keeps the address with the other.
    a.release(&web.key);
    assert_eq!(a.current(&dns.key).ips, [shared]);
    assert_eq!(a.usage("p")[0].2, 1);
    a.release(&dns.key);
    assert_eq!(a.usage("p")[0].2, 0);
}

#[test]
fn dual_stack_policies() {
    let mut a = alloc(vec![pool("v4only", &["10.0.0.0/30"])]);
    let mut require = req("ns", "require", 1);
    require.families = vec![Family::V4, Family::V6];
    assert_eq!(
        reason(&a.reconcile(&require)),
        Some(FailureReason::NoEligiblePool)
    );
    assert_eq!(a.usage("v4only")[0].2, 0, "nothing half-allocated");
    let mut prefer = req("ns", "prefer", 2);
    prefer.families = vec![Family::V4, Family::V6];
    prefer.require_all_families = false;
    let o = a.reconcile(&prefer);
    assert_eq!(ips_of(&o), [ip("10.0.0.0")]);
    assert!(
        matches!(&o, Outcome::Allocated { note: Some(n), .. } if n.contains("IPv6")),
        "{o:?}"
    );
    // The pool gains IPv6: the missing family is filled from the same pool.
    a.set_pools(vec![pool("v4only", &["10.0.0.0/30", "2001:db8::/126"])]);
    assert_eq!(
        ips_of(&a.reconcile(&prefer)),
        [ip("10.0.0.0"), ip("2001:db8::")]
    );
    assert_eq!(
        ips_of(&a.reconcile(&require)),
        [ip("10.0.0.1"), ip("2001:db8::1")]
    );
    let mut v6 = req("ns", "v6", 3);
    v6.families = vec![Family::V6];
    assert_eq!(ips_of(&a.reconcile(&v6)), [ip("2001:db8::2")]);
}

#[test]
fn exhaustion_then_room_freed() {
    let mut a = alloc(vec![pool("tiny", &["10.0.0.7/32"])]);
    let first = req("ns", "first", 1);
    a.reconcile(&first);
    let second = req("ns", "second", 2);
    let o = a.reconcile(&second);
    assert_eq!(reason(&o), Some(FailureReason::PoolExhausted), "{o:?}");
    a.release(&first.key);
    assert_eq!(ips_of(&a.reconcile(&second)), [ip("10.0.0.7")]);
}

#[test]
fn restore_keeps_addresses_and_older_wins_duplicates() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])]);
    let s1 = req("ns", "s1", 1);
    let s2 = req("ns", "s2", 2);
    a.restore(&s1, &[ip("10.0.0.42")]);
    a.restore(&s2, &[ip("10.0.0.42")]);
    assert_eq!(ips_of(&a.reconcile(&s1)), [ip("10.0.0.42")]);
    // The duplicate holder gets the lowest free address instead.
    assert_eq!(ips_of(&a.reconcile(&s2)), [ip("10.0.0.0")]);
    assert_eq!(a.usage("p")[0].2, 2);
}

#[test]
fn pool_edits_keep_addresses_and_report_orphans() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/24"])]);
    let s = req("ns", "s", 1);
    a.restore(&s, &[ip("10.0.0.200")]);
    // Shrink that keeps the address inside.
    a.set_pools(vec![pool("p", &["10.0.0.128/25"])]);
    assert_eq!(ips_of(&a.reconcile(&s)), [ip("10.0.0.200")]);
    // Shrink that leaves it outside every pool: kept, and said so.
    a.set_pools(vec![pool("p", &["10.0.0.0/25"])]);
    let o = a.reconcile(&s);
    assert_eq!(ips_of(&o), [ip("10.0.0.200")]);
    assert!(
        matches!(&o, Outcome::Allocated { note: Some(n), alloc, .. } if n.contains("outside every AddressPool") && alloc.pool.is_none()),
        "{o:?}"
    );
    assert_eq!(a.usage("p")[0].2, 0);
    // Another pool covering it again takes it back in.
    a.set_pools(vec![
        pool("p", &["10.0.0.0/25"]),
        pool("q", &["10.0.0.192/26"]),
    ]);
    assert_eq!(a.current(&s.key).pool.as_deref(), Some("q"));
    assert_eq!(a.usage("q")[0].2, 1);
}

#[test]
fn overlapping_pools_newer_is_not_ready() {
    let mut newer = pool("newer", &["10.0.0.128/25"]);
    newer.created = Some(Timestamp::from_second(2_000).unwrap());
    newer.priority = 1;
    let mut a = alloc(vec![pool("older", &["10.0.0.0/24"]), newer]);
    let why = a.readiness("newer").unwrap().unwrap_err();
    assert!(why.contains("AddressPool older"), "{why}");
    assert!(a.readiness("older").unwrap().is_ok());
    assert_eq!(ips_of(&a.reconcile(&req("ns", "s", 1))), [ip("10.0.0.0")]);
}

#[derive(Debug)]
struct DenyNamespace(&'static str);

impl PolicyCheck for DenyNamespace {
    fn check(&self, claim: &Claim<'_>) -> Decision {
        if claim.request.key.namespace == self.0 {
            Decision::deny(format!(
                "namespace {} may not use pool {}",
                self.0, claim.pool.name
            ))
        } else {
            Decision::Allow
        }
    }
}

#[test]
fn policy_denials_are_reported_and_other_pools_tried() {
    let mut a = Allocator::new(Arc::new(DenyNamespace("tenant")));
    a.set_pools(vec![pool("p", &["10.0.0.0/24"])]);
    let o = a.reconcile(&req("tenant", "s", 1));
    assert_eq!(reason(&o), Some(FailureReason::PolicyDenied));
    assert_eq!(
        ips_of(&a.reconcile(&req("platform", "s", 1))),
        [ip("10.0.0.0")]
    );
}

#[derive(Debug)]
struct DenyPool(&'static str);

impl PolicyCheck for DenyPool {
    fn check(&self, claim: &Claim<'_>) -> Decision {
        if claim.pool.name == self.0 {
            Decision::deny(format!("pool {} is closed", self.0))
        } else {
            Decision::Allow
        }
    }
}

/// Make before break: what the webhook would have refused, the allocator
/// refuses leaving the Service what it had.
#[test]
fn a_changed_request_that_fails_keeps_the_old_address_until_one_is_met() {
    let mut a = Allocator::new(Arc::new(DenyPool("closed")));
    a.set_pools(vec![
        pool("a", &["10.0.1.0/31"]),
        pool("closed", &["10.0.2.0/30"]),
        pool("full", &["10.0.3.0/32"]),
        pool("open", &["10.0.4.0/30"]),
    ]);
    let _filler = {
        let mut f = req("ns", "filler", 0);
        f.pool = Some("full".into());
        assert_eq!(ips_of(&a.reconcile(&f)), [ip("10.0.3.0")]);
        f
    };
    let mut s = req("tenant", "s", 1);
    let had = ips_of(&a.reconcile(&s));
    assert_eq!(had, [ip("10.0.1.0")]);
    // A forbidden pool, a full pool, an address in use: each refused, the
    // old address kept (and still held: nobody else gets it).
    s.pool = Some("closed".into());
    let o = a.reconcile(&s);
    assert_eq!(reason(&o), Some(FailureReason::PolicyDenied));
    assert_eq!(ips_of(&o), had);
    s.pool = Some("full".into());
    let o = a.reconcile(&s);
    assert_eq!(reason(&o), Some(FailureReason::PoolExhausted));
    assert_eq!(ips_of(&o), had);
    s.pool = None;
    s.ips = vec![ip("10.0.3.0")];
    let o = a.reconcile(&s);
    assert_eq!(reason(&o), Some(FailureReason::IpInUse));
    assert_eq!(ips_of(&o), had);
    let mut other = req("ns", "other", 2);
    other.ips = had.clone();
    assert_eq!(reason(&a.reconcile(&other)), Some(FailureReason::IpInUse));
    // A request that can be met moves it, and frees the old address.
    s.ips = vec![];
    s.pool = Some("open".into());
    assert_eq!(ips_of(&a.reconcile(&s)), [ip("10.0.4.0")]);
    assert_eq!(ips_of(&a.reconcile(&other)), had);
}

/// A sharer whose change breaks the sharing loses the shared address at
/// once, even when its new request fails: one address, one owner.
#[test]
fn a_broken_sharing_releases_at_once_even_when_the_change_fails() {
    let mut a = alloc(vec![pool("p", &["10.0.0.0/32"])]);
    let mut web = req("ns", "web", 1);
    web.sharing_key = Some("k".into());
    let shared = ips_of(&a.reconcile(&web))[0];
    let mut dns = req("ns", "dns", 2);
    dns.sharing_key = Some("k".into());
    dns.ports = vec![PortKey {
        protocol: "UDP".into(),
        port: 53,
    }];
    assert_eq!(ips_of(&a.reconcile(&dns)), [shared]);
    // dns changes its key: it may no longer share, and the pool is full.
    dns.sharing_key = Some("other".into());
    let o = a.reconcile(&dns);
    assert_eq!(reason(&o), Some(FailureReason::PoolExhausted), "{o:?}");
    assert!(ips_of(&o).is_empty(), "{o:?}");
    assert_eq!(a.current(&web.key).ips, [shared]);
}
