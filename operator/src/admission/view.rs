//! The admission webhook's [`View`] of the index, and the [`Publisher`]
//! that keeps it current on every replica (leader or not): holdings are
//! maintained incrementally from the Services a batch touched, and a fresh
//! snapshot is published at most every `min_interval` so that a burst of
//! changes costs one rebuild.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barelb_policies::Engine;

use crate::index::{Index, NamespaceMeta, Touched};
use crate::metrics::Metrics;
use crate::policy::CelPolicies;
use crate::webhook::SharedView;
use barelb_core::policy::{AllowAll, PolicyCheck};
use barelb_core::pools::{PoolDef, readiness};
use barelb_core::request::{self, ClassPolicy, Request, ServiceKey, ServiceRecord};

/// The index as the webhook sees it, republished whenever it changes.
#[derive(Debug)]
pub struct View {
    pub pools: Vec<PoolDef>,
    pub ready: BTreeMap<String, Result<(), String>>,
    pub policy: Arc<dyn PolicyCheck>,
    pub namespaces: BTreeMap<String, NamespaceMeta>,
    /// Who holds each allocated address (from Service status).
    pub holders: HashMap<IpAddr, Vec<Arc<Request>>>,
    pub class: ClassPolicy,
    pub default_deny_pools: bool,
    /// Compiles policies under review (its own cache: a draft never
    /// replaces the policy in force).
    pub engine: Arc<Engine>,
    /// False until every watch has listed once: until then the webhook
    /// cannot tell an overlap or an orphan, and says so.
    pub synced: bool,
}

impl View {
    /// An empty, unsynced view.
    pub fn empty(engine: Arc<Engine>) -> Self {
        View {
            pools: Vec::new(),
            ready: BTreeMap::new(),
            policy: Arc::new(AllowAll),
            namespaces: BTreeMap::new(),
            holders: HashMap::new(),
            class: ClassPolicy::default(),
            default_deny_pools: false,
            engine,
            synced: false,
        }
    }

    pub(super) fn pool(&self, name: &str) -> Option<&PoolDef> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub(super) fn is_ready(&self, name: &str) -> bool {
        matches!(self.ready.get(name), Some(Ok(())))
    }

    /// The view of `index` the webhook judges with: `held` are the
    /// addresses Services hold with their requests ([`holding`]), `policy`
    /// the policies in force, `draft_engine` compiles policies under review.
    pub fn from_index<'a>(
        index: &Index,
        held: impl IntoIterator<Item = &'a Holding>,
        policy: Arc<dyn PolicyCheck>,
        class: &ClassPolicy,
        default_deny_pools: bool,
        draft_engine: Arc<Engine>,
    ) -> View {
        let pools = index.pool_defs();
        let mut holders: HashMap<IpAddr, Vec<Arc<Request>>> = HashMap::new();
        for (ips, req) in held {
            for ip in ips {
                holders.entry(*ip).or_default().push(req.clone());
            }
        }
        View {
            ready: readiness(&pools),
            pools,
            policy,
            namespaces: index.namespace_meta(),
            holders,
            class: class.clone(),
            default_deny_pools,
            engine: draft_engine,
            synced: true,
        }
    }

    /// The pool that owns `ip`: a Ready pool containing it, else any.
    pub(super) fn pool_of(&self, ip: &IpAddr) -> Option<&PoolDef> {
        let containing = self
            .pools
            .iter()
            .filter(|p| p.ranges.iter().any(|r| r.contains(ip)))
            .map(|p| (p.name.as_str(), self.is_ready(&p.name)));
        let name = barelb_core::pools::owner(containing)?;
        self.pool(name)
    }
}

/// The addresses one Service holds, with its request.
pub type Holding = (Vec<IpAddr>, Arc<Request>);

/// What `svc` holds, if it is ours and holds anything.
pub fn holding(svc: &ServiceRecord, class: &ClassPolicy) -> Option<Holding> {
    let held = request::held(svc, class)?;
    let req = held.request(svc);
    Some((held.ips, req))
}

/// Builds and publishes views.
pub struct Publisher {
    target: SharedView,
    class: ClassPolicy,
    default_deny_pools: bool,
    /// Compiles the policies in force (shared with the allocator).
    engine: Arc<Engine>,
    /// Compiles drafts under review.
    draft_engine: Arc<Engine>,
    held: HashMap<ServiceKey, Holding>,
    loaded: bool,
    dirty: bool,
    last: Option<Instant>,
    min_interval: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("held", &self.held.len())
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(
        target: SharedView,
        class: ClassPolicy,
        default_deny_pools: bool,
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Publisher {
            target,
            class,
            default_deny_pools,
            engine,
            draft_engine: Arc::new(Engine::default()),
            held: HashMap::new(),
            loaded: false,
            dirty: true,
            last: None,
            min_interval: Duration::from_millis(100),
            metrics,
        }
    }

    /// Notes what a batch touched (call before the batch is consumed).
    pub fn note(&mut self, index: &Index, touched: &Touched) {
        if !index.synced() {
            return;
        }
        if !self.loaded {
            self.held.clear();
            for (key, svc) in index.services.iter() {
                self.refresh(key, Some(svc));
            }
            self.loaded = true;
            self.dirty = true;
            return;
        }
        for key in &touched.services {
            self.refresh(key, index.services.get(key));
        }
        self.dirty |=
            !touched.services.is_empty() || touched.pools || touched.policies || touched.namespaces;
    }

    fn refresh(&mut self, key: &ServiceKey, svc: Option<&ServiceRecord>) {
        match svc.and_then(|s| holding(s, &self.class)) {
            Some(e) => {
                self.held.insert(key.clone(), e);
            }
            None => {
                self.held.remove(key);
            }
        }
    }

    /// When the next publish is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        if !self.dirty || !self.loaded {
            return None;
        }
        Some(
            self.last
                .map_or_else(Instant::now, |l| l + self.min_interval),
        )
    }

    /// Publishes a new view if one is pending and due.
    pub fn publish_if_due(&mut self, index: &Index) {
        match self.due() {
            Some(at) if at <= Instant::now() => {}
            _ => return,
        }
        let policy = CelPolicies::from_index(self.engine.clone(), index, self.default_deny_pools)
            .with_timer(self.metrics.policy_evaluation_duration.clone());
        let view = View::from_index(
            index,
            self.held.values(),
            Arc::new(policy),
            &self.class,
            self.default_deny_pools,
            self.draft_engine.clone(),
        );
        match self.target.write() {
            Ok(mut v) => *v = Arc::new(view),
            Err(p) => *p.into_inner() = Arc::new(view),
        }
        self.dirty = false;
        self.last = Some(Instant::now());
    }
}
