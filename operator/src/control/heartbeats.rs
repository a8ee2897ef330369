//! Reads the nodes' kubelet heartbeats (their Leases in `kube-node-lease`)
//! for a settling leader, only while it leads and some layer-2 address
//! awaits the speaker of its last announcing node
//! ([`super::Hub::awaited_owners`]): a few lists per leader change, none
//! otherwise, and none soon after this replica could not reach the
//! apiserver. What a heartbeat means is decided in the hub
//! (`state::heartbeats`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::Hub;
use super::hub::Heartbeat;

/// Where kubelets keep their Leases.
const NAMESPACE: &str = "kube-node-lease";

/// How often the Leases are read while they matter: kubelets renew every
/// 10 s by default, so a silent one is seen within a few seconds of it.
const EVERY: Duration = Duration::from_secs(2);

/// How long after this replica last failed to reach the apiserver (or
/// started) the Leases are believed: after an outage the kubelets renew
/// one by one, and one not yet back would look silent. A renewal interval
/// (10 s by default) and slack: by then every live kubelet has renewed.
const TRUSTED_AFTER: Duration = Duration::from_secs(15);

/// Feeds `hub` the heartbeats while they matter; ends on shutdown.
/// `lease_failed`: when this replica's Lease requests last failed.
pub async fn follow(
    client: kube::Client,
    hub: Arc<Hub>,
    mut leader: watch::Receiver<bool>,
    lease_failed: watch::Receiver<std::time::Instant>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut awaited = hub.awaited_owners();
    let mut failing = false;
    loop {
        let wanted = *leader.borrow_and_update() && !awaited.borrow_and_update().is_empty();
        let trusted = lease_failed.borrow().elapsed() >= TRUSTED_AFTER;
        if wanted && trusted {
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    failing = false;
                    let read_ms = k8s_openapi::jiff::Timestamp::now().as_millisecond();
                    hub.set_heartbeats(read(&list.items), read_ms);
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the nodes' Leases in {NAMESPACE}: a settling leader waits for each Ready node's speaker up to --control-settle-max-ms; restore the operator's Role there (deploy/helm/barelb or deploy/kustomize/base)");
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(EVERY), if wanted => {}
            r = awaited.changed(), if !wanted => {
                if r.is_err() {
                    return;
                }
            }
            r = leader.changed(), if !wanted => {
                if r.is_err() {
                    return;
                }
            }
        }
    }
}

/// The heartbeats in `leases`: a kubelet's Lease is named after its node.
pub fn read(leases: &[Lease]) -> BTreeMap<String, Heartbeat> {
    leases
        .iter()
        .filter_map(|l| {
            let name = l.metadata.name.clone()?;
            let spec = l.spec.as_ref()?;
            let renewed = spec.renew_time.as_ref()?;
            let duration_s = u32::try_from(spec.lease_duration_seconds?).ok()?;
            let h = Heartbeat {
                renewed_ms: renewed.0.as_millisecond(),
                duration_s,
            };
            Some((name, h))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn lease(name: &str, renewed_ms: Option<i64>, duration: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                renew_time: renewed_ms
                    .map(|ms| MicroTime(Timestamp::from_millisecond(ms).unwrap())),
                lease_duration_seconds: duration,
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_kubelets_lease_reads_as_its_nodes_heartbeat() {
        let h = read(&[
            lease("node-1", Some(1_700_000_000_123), Some(40)),
            lease("never-renewed", None, Some(40)),
            lease("no-duration", Some(1_700_000_000_000), None),
            lease("negative", Some(1_700_000_000_000), Some(-1)),
        ]);
        assert_eq!(
            h.into_iter().collect::<Vec<_>>(),
            vec![(
                "node-1".to_string(),
                Heartbeat {
                    renewed_ms: 1_700_000_000_123,
                    duration_s: 40
                }
            )]
        );
    }
}
