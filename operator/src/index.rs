//! The operator's in-memory view of the cluster, fed by watch events: the
//! Services, AddressPools, Namespaces, Nodes and EndpointSlices it needs.
//! A malformed object is logged and skipped; it never stops a watch.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use barelb_api::{AddressPool, LoadBalancerPolicy};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;

use barelb_core::names::LAST_APPLIED_ANNOTATION;
use barelb_core::request::{ClassPolicy, ServiceKey, ServiceRecord, held, qualifies};

/// One watch event, tagged by kind. Each is moved once, through a channel,
/// so the size difference between variants costs nothing worth a Box.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Change {
    Service(Event<Service>),
    Pool(Event<DeserializeGuard<AddressPool>>),
    Policy(Event<DeserializeGuard<LoadBalancerPolicy>>),
    Namespace(Event<Namespace>),
    Node(Event<Node>),
    EndpointSlice(Event<EndpointSlice>),
    Peer(Event<DeserializeGuard<barelb_api::BGPPeer>>),
    /// A Secret in the operator's namespace (BGPPeer passwords).
    Secret(Event<Secret>),
}

/// What policies see of a Namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A keyed store that follows a watch, buffering a re-list so that objects
/// deleted while the watch was down are noticed.
#[derive(Debug)]
pub struct Store<K, V> {
    items: HashMap<K, V>,
    pending: Option<HashMap<K, V>>,
    synced: bool,
}

impl<K: Hash + Eq + Clone, V> Default for Store<K, V> {
    fn default() -> Self {
        Store {
            items: HashMap::new(),
            pending: None,
            synced: false,
        }
    }
}

impl<V: kube::Resource> Store<String, V> {
    /// Applies an event of a cluster-scoped object keyed by name, read
    /// through `DeserializeGuard`: an object that cannot be read is logged
    /// and skipped. Returns whether anything changed.
    fn handle_guarded(&mut self, ev: Event<DeserializeGuard<V>>, kind: &str) -> bool {
        let ev = match ev {
            Event::Apply(DeserializeGuard(Ok(o))) => {
                let name = o.meta().name.clone().unwrap_or_default();
                if self
                    .items
                    .get(&name)
                    .is_some_and(|old| same_but_status(old.meta(), o.meta()))
                {
                    // Only its status changed — mostly the operator's own
                    // status write coming back: nothing it reads did, so
                    // nothing is re-reconciled (and no write follows).
                    self.items.insert(name, o);
                    return false;
                }
                Event::Apply(DeserializeGuard(Ok(o)))
            }
            other => other,
        };
        let keys = self.handle(
            ev,
            |g| match g.0 {
                Ok(o) => Some((o.meta().name.clone().unwrap_or_default(), o)),
                Err(bad) => {
                    tracing::warn!(kind, name = bad.metadata.name.as_deref().unwrap_or("?"), error = %bad.error, "skipping an object that cannot be read");
                    None
                }
            },
            |g| match &g.0 {
                Ok(o) => o.meta().name.clone(),
                Err(bad) => bad.metadata.name.clone(),
            },
        );
        !keys.is_empty()
    }
}

/// Whether two versions of a custom resource differ at most in status:
/// the same spec (its generation), labels, annotations and deletion.
fn same_but_status(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.generation.is_some()
        && a.generation == b.generation
        && a.labels == b.labels
        && a.annotations == b.annotations
        && a.deletion_timestamp == b.deletion_timestamp
}

impl<K: Hash + Eq + Clone, V> Store<K, V> {
    /// Applies one event; returns the keys whose value changed or vanished.
    fn handle<O>(
        &mut self,
        ev: Event<O>,
        conv: impl Fn(O) -> Option<(K, V)>,
        key_of: impl Fn(&O) -> Option<K>,
    ) -> Vec<K> {
        match ev {
            Event::Apply(o) => match conv(o) {
                Some((k, v)) => {
                    self.items.insert(k.clone(), v);
                    vec![k]
                }
                None => Vec::new(),
            },
            Event::Delete(o) => match key_of(&o) {
                Some(k) => {
                    self.items.remove(&k);
                    vec![k]
                }
                None => Vec::new(),
            },
            Event::Init => {
                self.pending = Some(HashMap::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                if let (Some(p), Some((k, v))) = (self.pending.as_mut(), conv(o)) {
                    p.insert(k, v);
                }
                Vec::new()
            }
            Event::InitDone => {
                let fresh = self.pending.take().unwrap_or_default();
                let mut touched: Vec<K> = self
                    .items
                    .keys()
                    .filter(|k| !fresh.contains_key(*k))
                    .cloned()
                    .collect();
                touched.extend(fresh.keys().cloned());
                self.items = fresh;
                self.synced = true;
                touched
            }
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.items.get(k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.values()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the first full list has arrived.
    pub fn synced(&self) -> bool {
        self.synced
    }
}

/// A node as planning will need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    /// Where its speaker may connect from (control::auth::check_source).
    pub sources: Vec<ipnet::IpNet>,
}

/// A Node's addresses (as host networks) and pod networks.
fn node_sources(n: &Node) -> Vec<ipnet::IpNet> {
    let addresses = n
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| a.address.parse::<std::net::IpAddr>().ok())
        .map(ipnet::IpNet::from);
    let pod_cidrs = n
        .spec
        .iter()
        .flat_map(|s| s.pod_cidrs.iter().flatten().chain(s.pod_cidr.iter()))
        .filter_map(|c| c.parse::<ipnet::IpNet>().ok());
    let mut all: Vec<_> = addresses.chain(pod_cidrs).collect();
    all.sort();
    all.dedup();
    all
}

/// The endpoints of one EndpointSlice: its Service and the nodes with a
/// ready endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceInfo {
    pub service: ServiceKey,
    pub ready_nodes: Vec<String>,
    /// Ready endpoints, also those without a node name.
    pub ready: usize,
}

/// What a batch of changes touched.
#[derive(Debug, Default)]
pub struct Touched {
    pub services: Vec<ServiceKey>,
    pub pools: bool,
    pub policies: bool,
    pub namespaces: bool,
    pub peers: bool,
    /// A Node appeared, changed (labels, readiness) or went.
    pub nodes: bool,
}

impl Touched {
    /// Nothing touched.
    pub fn is_empty(&self) -> bool {
        let Touched {
            services,
            pools,
            policies,
            namespaces,
            peers,
            nodes,
        } = self;
        services.is_empty() && !(*pools || *policies || *namespaces || *peers || *nodes)
    }

    /// Adds what `other` touched.
    pub fn merge(&mut self, other: Touched) {
        let Touched {
            services,
            pools,
            policies,
            namespaces,
            peers,
            nodes,
        } = other;
        self.services.extend(services);
        self.pools |= pools;
        self.policies |= policies;
        self.namespaces |= namespaces;
        self.peers |= peers;
        self.nodes |= nodes;
    }
}

/// Everything the operator watches.
#[derive(Debug, Default)]
pub struct Index {
    /// Services as barelb reads them, not whole (memory: docs/benchmarks.md).
    pub services: Store<ServiceKey, ServiceRecord>,
    pub pools: Store<String, AddressPool>,
    pub policies: Store<String, LoadBalancerPolicy>,
    pub namespaces: Store<String, NamespaceMeta>,
    pub nodes: Store<String, NodeInfo>,
    pub endpoint_slices: Store<(String, String), SliceInfo>,
    pub peers: Store<String, barelb_api::BGPPeer>,
    /// Data of the Secrets in the operator's namespace, by name.
    pub secrets: Store<String, BTreeMap<String, Vec<u8>>>,
}

impl Index {
    /// Applies one change and says what it touched.
    pub fn apply(&mut self, change: Change, touched: &mut Touched) {
        match change {
            Change::Service(ev) => {
                if self.is_stale_service_event(&ev) {
                    return;
                }
                let keys = self.services.handle(
                    ev,
                    |s| {
                        let record = ServiceRecord::of(&s);
                        Some((record.key.clone(), record))
                    },
                    |s| Some(ServiceKey::of(s)),
                );
                touched.services.extend(keys);
            }
            Change::Pool(ev) => touched.pools |= self.pools.handle_guarded(ev, "AddressPool"),
            Change::Peer(ev) => touched.peers |= self.peers.handle_guarded(ev, "BGPPeer"),
            Change::Secret(ev) => {
                let was_synced = self.secrets.synced();
                let keys = self.secrets.handle(
                    ev,
                    |s| {
                        let data = s.data.unwrap_or_default();
                        let data = data.into_iter().map(|(k, v)| (k, v.0)).collect();
                        Some((s.metadata.name.clone().unwrap_or_default(), data))
                    },
                    |s| s.metadata.name.clone(),
                );
                // The first complete read counts as a change: until then the
                // hub has no inputs (a session would go out without its
                // password), and a read absorbed while writes are in flight
                // must still wake the controller to send them. After that,
                // only a Secret some peer names changes a peer's session.
                touched.peers |= !was_synced && self.secrets.synced();
                touched.peers |= keys.iter().any(|k| {
                    self.peers.values().any(|p| {
                        p.spec
                            .password_secret_ref
                            .as_ref()
                            .is_some_and(|r| &r.name == k)
                    })
                });
            }
            Change::Policy(ev) => {
                touched.policies |= self.policies.handle_guarded(ev, "LoadBalancerPolicy")
            }
            Change::Namespace(ev) => {
                let keys = self.namespaces.handle(
                    ev,
                    |n| {
                        let mut annotations = n.metadata.annotations.unwrap_or_default();
                        annotations.remove(LAST_APPLIED_ANNOTATION);
                        Some((
                            n.metadata.name.clone().unwrap_or_default(),
                            NamespaceMeta {
                                labels: n.metadata.labels.unwrap_or_default(),
                                annotations,
                            },
                        ))
                    },
                    |n| n.metadata.name.clone(),
                );
                touched.namespaces |= !keys.is_empty();
            }
            Change::Node(ev) => {
                touched.nodes |= !self
                    .nodes
                    .handle(
                        ev,
                        |n| {
                            let ready = n
                                .status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|cs| {
                                    cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                });
                            let sources = node_sources(&n);
                            Some((
                                n.metadata.name.clone().unwrap_or_default(),
                                NodeInfo {
                                    labels: n.metadata.labels.unwrap_or_default(),
                                    ready,
                                    sources,
                                },
                            ))
                        },
                        |n| n.metadata.name.clone(),
                    )
                    .is_empty();
            }
            Change::EndpointSlice(ev) => {
                // A slice that goes is no longer in the store afterwards:
                // its Service (which may have lost its last endpoint) is read
                // before. A relist may drop any: all the old ones count.
                let going: Vec<ServiceKey> = match &ev {
                    Event::Delete(s) => slice_key(s)
                        .and_then(|k| self.endpoint_slices.get(&k))
                        .map(|i| i.service.clone())
                        .into_iter()
                        .collect(),
                    Event::InitDone => self
                        .endpoint_slices
                        .values()
                        .map(|i| i.service.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                let keys = self.endpoint_slices.handle(ev, slice_info, slice_key);
                touched.services.extend(going);
                touched.services.extend(
                    keys.iter()
                        .filter_map(|k| self.endpoint_slices.get(k).map(|s| s.service.clone())),
                );
            }
        }
    }

    /// The AddressPools as the allocator and the webhook read them.
    pub fn pool_defs(&self) -> Vec<barelb_core::pools::PoolDef> {
        self.pools.values().map(crate::pools::pool_def).collect()
    }

    /// Every Service this instance handles that holds addresses of a pool
    /// (the one that owns its first address, `pools::owner`) and is not
    /// being deleted: what planning and the Announced condition start from.
    /// A deleting Service is withdrawn at once, as a cloud's service
    /// controller deletes the load balancer when deletion begins; it keeps
    /// its addresses (no other Service is given them) until it is gone.
    pub fn pooled<'a>(
        &'a self,
        class: &'a ClassPolicy,
    ) -> impl Iterator<
        Item = (
            &'a ServiceKey,
            &'a ServiceRecord,
            Vec<std::net::IpAddr>,
            String,
        ),
    > + 'a {
        let defs = self.pool_defs();
        let ready = barelb_core::pools::readiness(&defs);
        self.services.iter().filter_map(move |(key, svc)| {
            if !qualifies(svc, class) {
                return None;
            }
            let held = held(svc, class)?;
            let first = held.ips.first()?;
            let containing = defs
                .iter()
                .filter(|p| p.ranges.iter().any(|r| r.contains(first)))
                .map(|p| (p.name.as_str(), matches!(ready.get(&p.name), Some(Ok(())))));
            let pool = barelb_core::pools::owner(containing)?.to_string();
            Some((key, svc, held.ips, pool))
        })
    }

    /// Namespace labels and annotations by name (what policies see).
    pub fn namespace_meta(&self) -> BTreeMap<String, NamespaceMeta> {
        self.namespaces
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether a Service event is older than what the index holds: after a
    /// consistent read ([`Index::refresh_services`]) the watch may still
    /// deliver events from before it, which must not undo it.
    fn is_stale_service_event(&self, ev: &Event<Service>) -> bool {
        let (Event::Apply(svc) | Event::Delete(svc)) = ev else {
            return false;
        };
        let held = self
            .services
            .get(&ServiceKey::of(svc))
            .map(|r| r.resource_version);
        held.is_some_and(|held| held > resource_version(svc))
    }

    /// Takes Services from a consistent read of the apiserver, each only
    /// where it is newer than what the watch delivered. Services missing from
    /// the read stay until their watch deletion arrives (keeping a deleted
    /// Service's addresses a moment longer moves nothing). Returns how many
    /// were newer.
    pub fn refresh_services(&mut self, read: Vec<ServiceRecord>) -> usize {
        let mut newer = 0;
        for record in read {
            let held = self.services.get(&record.key).map(|r| r.resource_version);
            if held.is_none_or(|held| held < record.resource_version) {
                self.services.items.insert(record.key.clone(), record);
                newer += 1;
            }
        }
        newer
    }

    /// Whether every watch has delivered its first full list.
    pub fn synced(&self) -> bool {
        self.services.synced()
            && self.pools.synced()
            && self.policies.synced()
            && self.namespaces.synced()
            && self.nodes.synced()
            && self.endpoint_slices.synced()
    }
}

/// An object's resourceVersion as a number (etcd's revision; 0 when absent
/// or not a number, which only a non-etcd apiserver would send).
pub fn resource_version<K: kube::Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Drops the largest parts of a Service the operator never reads — field
/// ownership details (only who wrote the status matters) and kubectl's copy
/// of the last applied object — in the watch stream
/// ([`crate::controller`]), before events wait in the controller's channel
/// (the index keeps a [`ServiceRecord`]).
pub(crate) fn trim_in_place(svc: &mut Service) {
    if let Some(mf) = svc.metadata.managed_fields.as_mut() {
        mf.retain(|m| m.subresource.as_deref() == Some("status"));
        for m in mf.iter_mut() {
            m.fields_v1 = None;
        }
    }
    if let Some(a) = svc.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED_ANNOTATION);
    }
}

fn slice_key(s: &EndpointSlice) -> Option<(String, String)> {
    Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?))
}

fn slice_info(s: EndpointSlice) -> Option<((String, String), SliceInfo)> {
    let key = slice_key(&s)?;
    let service = s
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .clone();
    let ready: Vec<_> = s
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .collect();
    let mut ready_nodes: Vec<String> = ready.iter().filter_map(|e| e.node_name.clone()).collect();
    ready_nodes.sort();
    ready_nodes.dedup();
    Some((
        key.clone(),
        SliceInfo {
            service: ServiceKey {
                namespace: key.0,
                name: service,
            },
            ready_nodes,
            ready: ready.len(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(generation: i64, label: &str, usage: &str) -> AddressPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "barelb.io/v1alpha1", "kind": "AddressPool",
            "metadata": {"name": "p", "generation": generation, "labels": {"team": label}},
            "spec": {"addresses": ["192.0.2.0/28"], "announce": {"mode": "L2"}},
            "status": {"usage": usage},
        }))
        .unwrap()
    }

    fn apply(index: &mut Index, p: AddressPool) -> bool {
        let mut t = Touched::default();
        index.apply(Change::Pool(Event::Apply(DeserializeGuard(Ok(p)))), &mut t);
        t.pools
    }

    #[test]
    fn a_status_only_change_of_a_pool_touches_nothing_but_is_kept() {
        let mut index = Index::default();
        assert!(apply(&mut index, pool(1, "a", "0/16")));
        // The operator's own status write coming back.
        assert!(!apply(&mut index, pool(1, "a", "1/16")));
        assert_eq!(
            index
                .pools
                .get(&"p".to_string())
                .and_then(|p| p.status.clone())
                .and_then(|s| s.usage),
            Some("1/16".to_string())
        );
        // A spec change (new generation) or a label change is a change.
        assert!(apply(&mut index, pool(2, "a", "1/16")));
        assert!(apply(&mut index, pool(2, "b", "1/16")));
    }

    #[test]
    fn a_deleted_endpoint_slice_touches_its_service() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n1"}],
        }))
        .unwrap();
        let mut index = Index::default();
        let mut touch = |ev: Event<EndpointSlice>| {
            let mut t = Touched::default();
            index.apply(Change::EndpointSlice(ev), &mut t);
            t.services
        };
        let web = ServiceKey {
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(touch(Event::Apply(slice.clone())), vec![web.clone()]);
        assert_eq!(touch(Event::Delete(slice.clone())), vec![web.clone()]);
        // A relist without it: its Service counts as touched too.
        touch(Event::Apply(slice));
        assert!(touch(Event::Init).is_empty());
        assert_eq!(touch(Event::InitDone), vec![web]);
    }

    #[test]
    fn the_first_complete_read_of_secrets_touches_the_peers() {
        let mut index = Index::default();
        let mut read = |ev: Event<Secret>| {
            let mut t = Touched::default();
            index.apply(Change::Secret(ev), &mut t);
            t.peers
        };
        assert!(!read(Event::Init));
        // No BGPPeer names any Secret, yet the hub waits for this read.
        assert!(read(Event::InitDone));
        let unnamed = Secret {
            metadata: ObjectMeta {
                name: Some("unnamed".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(!read(Event::Apply(unnamed)));
        // A relist after a watch error is not a first read.
        assert!(!read(Event::Init));
        assert!(!read(Event::InitDone));
    }
}
