//! The allocation controller: a thin async shell around barelb-core's
//! [`Allocator`](barelb_core::allocator::Allocator).
//!
//! Every watch ([`watches`]) feeds one channel; the loop drains it into the
//! [`Index`], keeps the webhook's view and the control hub's inputs
//! current (on every replica), and — only while leading — reconciles what
//! the batch touched ([`reconcile`], no I/O) and writes back only what
//! differs ([`writes`]). On becoming leader it first rebuilds every
//! allocation from Service status.

mod feed;
mod reconcile;
mod resource_status;
pub mod simulate;
#[cfg(test)]
mod tests;
mod watches;
mod writes;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use barelb_core::request::{ClassPolicy, ServiceKey, ServiceRecord};
use barelb_policies::Engine;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::events::Events;
use tokio::sync::{mpsc, watch};

use crate::admission::view::Publisher;
use crate::control::hub::Sessions;
use crate::control::{Hub, inputs};
use crate::index::{Change, Index, Touched};
use crate::metrics::Metrics;
use crate::status::announced::{self, Announced};
use crate::webhook::SharedView;
use feed::HubFeed;
use reconcile::Leading;
use writes::InFlight;

/// How the controller behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    pub class: ClassPolicy,
    /// The operator's namespace (BGPPeer password Secrets live here).
    pub namespace: String,
    /// Label selector limiting the AddressPools this instance uses ("" = all).
    pub pool_selector: String,
    /// Refuse claims on pools that no LoadBalancerPolicy selects.
    pub default_deny_pools: bool,
    pub field_manager: String,
    pub identity: String,
    /// Writes to the apiserver in flight at once.
    pub write_concurrency: usize,
}

/// The controller's state between batches.
struct Controller {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    events: Events,
    /// Compiles the policies in force (shared with the webhook's view).
    engine: Arc<Engine>,
    index: Index,
    /// What the last batches touched, not yet reconciled.
    touched: Touched,
    publisher: Publisher,
    /// Present while leading.
    leading: Option<Leading>,
    /// Refused Services come back here after their backoff.
    retry: mpsc::UnboundedSender<ServiceKey>,
    /// What the control hub is given from the index.
    feed: HubFeed,
    /// The Announced condition last written per Service.
    announced: HashMap<ServiceKey, Announced>,
}

/// Runs until `shutdown` turns true.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    mut leader: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    view: SharedView,
    hub: Option<Arc<Hub>>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Change>(8192);
    watches::start(&client, &settings, hub.is_some(), &tx);
    drop(tx);
    let (retry, mut retries) = mpsc::unbounded_channel::<ServiceKey>();
    let mut c = Controller::new(client, settings, metrics, view, hub, retry);
    let mut plans = c.feed.hub.as_ref().map(|h| h.plans());
    let mut sessions = c.feed.hub.as_ref().map(|h| h.sessions_watch());
    let mut plan_changed = false;
    let mut peers_changed = false;
    loop {
        tokio::select! {
            // Changes that arrived while the last batch's writes were in flight.
            () = std::future::ready(()), if c.index.synced() && !c.touched.is_empty() => {}
            Ok(()) = async {
                match plans.as_mut() {
                    Some(p) => p.changed().await,
                    None => std::future::pending().await,
                }
            } => plan_changed = true,
            Ok(()) = async {
                match sessions.as_mut() {
                    Some(s) => s.changed().await,
                    None => std::future::pending().await,
                }
            } => peers_changed = true,
            change = rx.recv() => {
                let Some(change) = change else { anyhow::bail!("all watches ended") };
                c.absorb(change);
                while let Ok(more) = rx.try_recv() {
                    c.absorb(more);
                }
            }
            Some(key) = retries.recv() => c.touched.services.push(key),
            _ = leader.changed() => {}
            _ = shutdown.changed() => return Ok(()),
            _ = sleep_until(c.publisher.due()) => {}
            // Only once synced: nothing is passed on before (the loop would spin).
            _ = sleep_until(c.feed.due()), if c.index.synced() => {}
        }
        if !c.index.synced() {
            continue;
        }
        c.publish();
        c.feed.feed_if_due(&c.index, &c.settings, &c.metrics);
        c.metrics.set_ready(true);
        if !*leader.borrow() {
            c.follow();
            continue;
        }
        if c.leading.is_none() && !c.catch_up(&leader).await {
            continue;
        }
        peers_changed |= c.touched.peers || c.leading.is_none();
        c.allocate(&mut rx).await;
        let plan = match plans.as_mut() {
            Some(p) if std::mem::take(&mut plan_changed) => {
                let plan = p.borrow_and_update().clone();
                c.write_announced(&plan).await;
                peers_changed = true;
                Some(plan)
            }
            Some(p) if peers_changed => Some(p.borrow().clone()),
            _ => None,
        };
        if let (Some(plan), Some(s)) = (plan, sessions.as_mut())
            && std::mem::take(&mut peers_changed)
        {
            let now = s.borrow_and_update().clone();
            c.write_peers(&plan, &now).await;
        }
    }
}

impl Controller {
    fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        view: SharedView,
        hub: Option<Arc<Hub>>,
        retry: mpsc::UnboundedSender<ServiceKey>,
    ) -> Self {
        let writer = crate::events::Writer::new(client.clone(), &settings.identity);
        let engine = Arc::new(Engine::default());
        let publisher = Publisher::new(
            view,
            settings.class.clone(),
            settings.default_deny_pools,
            engine.clone(),
            metrics.clone(),
        );
        Controller {
            client,
            settings,
            metrics,
            events: Events::start(writer),
            engine,
            index: Index::default(),
            touched: Touched::default(),
            publisher,
            leading: None,
            retry,
            feed: HubFeed::new(hub),
            announced: HashMap::new(),
        }
    }

    /// One watch event into the index.
    fn absorb(&mut self, change: Change) {
        absorb(&mut self.index, &mut self.touched, &mut self.feed, change);
    }

    /// Keeps the webhook's view current (every replica answers admission).
    fn publish(&mut self) {
        self.publisher.note(&self.index, &self.touched);
        self.publisher.publish_if_due(&self.index);
    }

    /// Not leading: drop the leader's state, and what was touched meanwhile
    /// (a new leader rebuilds from status anyway).
    fn follow(&mut self) {
        if self.leading.take().is_some() {
            tracing::info!("no longer leader: stopped allocating");
            self.metrics.leader.set(0);
            self.metrics.forget_leader_series();
            self.announced.clear();
        }
        self.touched = Touched::default();
    }

    /// About to lead: a consistent read of every Service, so the rebuild
    /// sees every status the last leader wrote, even one this replica's watch
    /// has not delivered yet (else that Service would look unaddressed and
    /// get another address). Retries while leading; false if leadership
    /// went first.
    async fn catch_up(&mut self, leader: &watch::Receiver<bool>) -> bool {
        let started = Instant::now();
        loop {
            match read_all_services(&self.client).await {
                Ok(read) => {
                    let listed = read.len();
                    let newer = self.index.refresh_services(read);
                    tracing::info!(
                        services = listed,
                        newer,
                        millis = started.elapsed().as_millis() as u64,
                        "read every Service before rebuilding"
                    );
                    if let Some(hub) = &self.feed.hub {
                        hub.set_last_owners(inputs::last_owners(&self.index, &self.settings.class));
                    }
                    self.announced = announced::current(&self.index, &self.settings.class);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read Services before leading; retrying in 1 s");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if !*leader.borrow() {
                        return false;
                    }
                }
            }
        }
    }

    /// Leading: reconcile what the batch touched (everything on becoming
    /// leader, or when pools, policies or namespaces changed) and write
    /// back what differs.
    async fn allocate(&mut self, incoming: &mut mpsc::Receiver<Change>) {
        let started = Instant::now();
        let batch = std::mem::take(&mut self.touched);
        let fresh = self.leading.is_none();
        let policy = || reconcile::policies(&self.index, &self.engine, &self.settings);
        let state = match self.leading.as_mut() {
            Some(s) => s,
            None => {
                self.metrics.leader.set(1);
                self.leading.insert(reconcile::rebuild(
                    &self.index,
                    &self.settings.class,
                    policy(),
                ))
            }
        };
        let mut keys: BTreeSet<ServiceKey> = batch.services.into_iter().collect();
        if batch.pools {
            state.alloc.set_pools(self.index.pool_defs());
        }
        if !fresh && (batch.policies || batch.namespaces) {
            state.alloc.set_policy(policy());
        }
        if fresh || batch.pools || batch.namespaces || batch.policies {
            keys.extend(self.index.services.iter().map(|(k, _)| k.clone()));
        }
        let writes =
            reconcile::reconcile_keys(state, &self.index, &self.settings, keys, &self.metrics);
        if let Some(hub) = &self.feed.hub {
            note_traces(hub, &writes);
        }
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        let ctx = writes::Context {
            client: &self.client,
            settings: &self.settings,
            events: &self.events,
            metrics: &self.metrics,
        };
        let (index, touched, feed) = (&mut self.index, &mut self.touched, &mut self.feed);
        writes::execute(
            &ctx,
            state,
            writes,
            &self.retry,
            incoming,
            |now| match now {
                InFlight::Change(change) => absorb(index, touched, feed, change),
                InFlight::Feed => feed.feed_if_due(index, ctx.settings, ctx.metrics),
            },
        )
        .await;
        writes::write_pools(&ctx, state, &*index).await;
        if fresh || batch.pools || batch.policies {
            resource_status::write_policies(&ctx, state, &*index, &self.engine).await;
        }
    }

    /// BGPPeer status, while leading.
    async fn write_peers(&mut self, plan: &barelb_core::planner::Plan, sessions: &Sessions) {
        let Some(state) = self.leading.as_mut() else {
            return;
        };
        let ctx = writes::Context {
            client: &self.client,
            settings: &self.settings,
            events: &self.events,
            metrics: &self.metrics,
        };
        resource_status::write_peers(
            &ctx,
            state,
            &self.index,
            plan,
            sessions,
            &self.feed.peer_configs,
        )
        .await;
    }

    /// The Announced condition of every Service whose announcers changed.
    async fn write_announced(&mut self, plan: &barelb_core::planner::Plan) {
        let now = announced::compute(&self.index, &self.settings.class, plan);
        announced::write(
            &self.client,
            &self.events,
            &self.index,
            now,
            &mut self.announced,
        )
        .await;
    }
}

/// One watch event into `index`: what it touched joins `touched` (what the
/// leader reconciles next) and is noted for the hub. Returns when the hub
/// is next due to be given it.
fn absorb(
    index: &mut Index,
    touched: &mut Touched,
    feed: &mut HubFeed,
    change: Change,
) -> Option<Instant> {
    let mut now = Touched::default();
    index.apply(change, &mut now);
    feed.note(&now);
    touched.merge(now);
    feed.due()
}

/// Addresses a traced reconcile gives a Service: the plan that places them
/// continues its trace.
fn note_traces(hub: &Hub, writes: &[reconcile::Write]) {
    for w in writes {
        if w.desired.ips.is_empty() || w.desired.ips == w.observed.ips {
            continue;
        }
        if let Some(t) = barelb_runtime::TraceContext::of(&w.span) {
            hub.note_trace(&w.desired.ips, &t);
        }
    }
}

/// Every Service, read from the apiserver's storage (no resourceVersion:
/// a consistent read, not its watch cache), in pages of 500, each reduced
/// to its records as it comes (whole, 10,000 Services held at once are
/// ~90 MB of field ownership records alone).
async fn read_all_services(client: &Client) -> Result<Vec<ServiceRecord>, kube::Error> {
    let api: Api<Service> = Api::all(client.clone());
    let mut all = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        all.extend(page.items.iter().map(ServiceRecord::of));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(all),
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
