//! Every watch the controller runs, in one table: what is watched, with
//! which selector, and how its events enter the index.
//!
//! Objects are trimmed in the stream, before they wait in the controller's
//! channel: field ownership records (`managedFields`) are most of a listed
//! object's memory, and while an operator starts, thousands of events can
//! wait there at once (10,000 allocated Services: 230 MiB RSS untrimmed,
//! most of it freed but not given back).

use barelb_api::{AddressPool, BGPPeer, LoadBalancerPolicy};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use super::Settings;
use crate::index::Change;

/// Starts every watch; their events arrive on `tx`. `control`: the control
/// channel is served, so BGPPeers and their password Secrets are needed too.
pub(super) fn start(
    client: &Client,
    settings: &Settings,
    control: bool,
    tx: &mpsc::Sender<Change>,
) {
    let all = watcher::Config::default;
    let pools = if settings.pool_selector.is_empty() {
        all()
    } else {
        all().labels(&settings.pool_selector)
    };
    let c = || client.clone();
    spawn(
        watcher(Api::<Service>::all(c()), all()).modify(crate::index::trim_in_place),
        tx,
        Change::Service,
    );
    spawn(
        watcher(Api::<DeserializeGuard<AddressPool>>::all(c()), pools),
        tx,
        Change::Pool,
    );
    spawn(
        watcher(Api::<DeserializeGuard<LoadBalancerPolicy>>::all(c()), all()),
        tx,
        Change::Policy,
    );
    spawn(
        watcher(Api::<Namespace>::all(c()), all()).modify(drop_managed_fields),
        tx,
        Change::Namespace,
    );
    spawn(
        watcher(Api::<Node>::all(c()), all()).modify(drop_managed_fields),
        tx,
        Change::Node,
    );
    spawn(
        watcher(Api::<EndpointSlice>::all(c()), all()).modify(drop_managed_fields),
        tx,
        Change::EndpointSlice,
    );
    if control {
        spawn(
            watcher(Api::<DeserializeGuard<BGPPeer>>::all(c()), all()),
            tx,
            Change::Peer,
        );
        // BGPPeer passwords: a Secret created after its peer, or rotated,
        // re-keys the session.
        spawn(
            watcher(Api::<Secret>::namespaced(c(), &settings.namespace), all()),
            tx,
            Change::Secret,
        );
    }
}

/// The index reads no field ownership of these kinds.
fn drop_managed_fields<K: ResourceExt>(obj: &mut K) {
    obj.managed_fields_mut().clear();
}

fn spawn<K, S>(stream: S, tx: &mpsc::Sender<Change>, wrap: fn(watcher::Event<K>) -> Change)
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send(wrap(ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watch error; retrying with backoff"),
            }
        }
    });
}
