//! The live cluster as the operator sees it: every object it watches, read
//! once into the operator's own [`Index`], plus what only people need (the
//! speaker Pods, the leader's view of their streams, a Service's events).

use std::collections::BTreeMap;

use barelb_api::{AddressPool, BGPPeer, LoadBalancerPolicy};

use crate::leader::{self, LeaderView};
use barelb_operator::index::{Change, Index, Touched};
use k8s_openapi::api::core::v1::{Event as KubeEvent, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;

/// Label of the speaker DaemonSet's Pods (the chart's and kustomize's).
const SPEAKER_SELECTOR: &str = "app.kubernetes.io/name=barelb-speaker";

/// One read of the cluster.
#[derive(Debug)]
pub struct Cluster {
    pub index: Index,
    pub pools: Vec<AddressPool>,
    pub policies: Vec<LoadBalancerPolicy>,
    pub peers: Vec<BGPPeer>,
    /// Node → whether its speaker Pod is Ready (a speaker turns Ready once
    /// the operator's first Snapshot is applied: it is connected).
    pub speakers: BTreeMap<String, bool>,
    /// The leading operator's view of the speakers, or why it is unknown.
    pub leader: Result<LeaderView, String>,
}

async fn list<K>(api: Api<K>, what: &str) -> anyhow::Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("list {what}: {e}"))?
        .items)
}

impl Cluster {
    /// Reads the cluster, and the speakers' streams from the leader in
    /// `operator_ns`.
    pub async fn read(client: &kube::Client, operator_ns: &str) -> anyhow::Result<Cluster> {
        let c = client.clone();
        let services = list(Api::<Service>::all(c.clone()), "Services").await?;
        let namespaces = list(Api::<Namespace>::all(c.clone()), "Namespaces").await?;
        let nodes = list(Api::<Node>::all(c.clone()), "Nodes").await?;
        let slices = list(Api::<EndpointSlice>::all(c.clone()), "EndpointSlices").await?;
        let pools = list(Api::<AddressPool>::all(c.clone()), "AddressPools").await?;
        let policies = list(
            Api::<LoadBalancerPolicy>::all(c.clone()),
            "LoadBalancerPolicies",
        )
        .await?;
        let peers = list(Api::<BGPPeer>::all(c.clone()), "BGPPeers").await?;
        let pods = Api::<Pod>::all(c)
            .list(&ListParams::default().labels(SPEAKER_SELECTOR))
            .await
            .map_err(|e| anyhow::anyhow!("list speaker Pods: {e}"))?
            .items;
        let mut index = Index::default();
        let mut t = Touched::default();
        let mut apply = |change: Change| index.apply(change, &mut t);
        namespaces
            .into_iter()
            .for_each(|o| apply(Change::Namespace(Event::Apply(o))));
        services
            .into_iter()
            .for_each(|o| apply(Change::Service(Event::Apply(o))));
        nodes
            .into_iter()
            .for_each(|o| apply(Change::Node(Event::Apply(o))));
        slices
            .into_iter()
            .for_each(|o| apply(Change::EndpointSlice(Event::Apply(o))));
        for p in &pools {
            apply(Change::Pool(Event::Apply(DeserializeGuard(Ok(p.clone())))));
        }
        for p in &policies {
            apply(Change::Policy(Event::Apply(DeserializeGuard(
                Ok(p.clone()),
            ))));
        }
        for p in &peers {
            apply(Change::Peer(Event::Apply(DeserializeGuard(Ok(p.clone())))));
        }
        let speakers = pods
            .iter()
            .filter_map(|p| {
                let node = p.spec.as_ref()?.node_name.clone()?;
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                Some((node, ready))
            })
            .collect();
        Ok(Cluster {
            index,
            pools,
            policies,
            peers,
            speakers,
            leader: leader::read(client, operator_ns).await,
        })
    }
}

/// The last `n` events about Service `ns/name`, oldest first, as lines.
pub async fn events(client: &kube::Client, ns: &str, name: &str, n: usize) -> Vec<String> {
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=Service,involvedObject.name={name}"
    ));
    let Ok(list) = Api::<KubeEvent>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
    else {
        return Vec::new();
    };
    let mut evs: Vec<(String, String)> = list
        .items
        .into_iter()
        .map(|e| {
            let when = e
                .last_timestamp
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.map(|t| t.0.to_string()))
                .unwrap_or_default();
            let line = format!(
                "{when} {} {}: {}",
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            );
            (when, line)
        })
        .collect();
    evs.sort();
    evs.into_iter()
        .rev()
        .take(n)
        .rev()
        .map(|(_, l)| l)
        .collect()
}
