//! Leader election on a coordination.k8s.io Lease, so that several replicas
//! run safely and only one allocates and writes.
//!
//! Expiry is judged by when this replica last saw the Lease change (as
//! client-go does), not by the holder's clock. A leader that cannot renew
//! within `renew_deadline` steps down before its Lease can expire elsewhere.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

enum Step {
    Leading,
    Following,
}

/// Runs the election until `shutdown` turns true, publishing whether this
/// replica leads on `leading`, and on `failed` when a Lease request last
/// failed (the apiserver out of reach). On shutdown a held Lease is
/// released so a standby takes over at once.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
    failed: watch::Sender<Instant>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<(String, Instant)> = None;
    let mut last_renew = Instant::now();
    loop {
        // Bounded by the renew deadline: a request to an apiserver this
        // replica can no longer reach (its node cut off) would otherwise
        // hang for the client's timeout, and a leader go on leading long
        // after its Lease expired and another took it.
        let bound = if *leading.borrow() {
            cfg.renew_deadline.saturating_sub(last_renew.elapsed())
        } else {
            cfg.renew_deadline
        };
        let step = match tokio::time::timeout(bound, attempt(&api, &cfg, &mut observed)).await {
            Ok(step) => step.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", bound.as_millis())),
        };
        let now_leading = match step {
            Ok(Step::Leading) => {
                last_renew = Instant::now();
                true
            }
            Ok(Step::Following) => false,
            Err(e) => {
                tracing::warn!(error = %e, "lease update failed");
                failed.send_replace(Instant::now());
                // Keep leading only while the last renewal is recent enough.
                *leading.borrow() && last_renew.elapsed() < cfg.renew_deadline
            }
        };
        leading.send_if_modified(|l| {
            let changed = *l != now_leading;
            if changed {
                tracing::info!(identity = %cfg.identity, leading = now_leading, "leadership changed");
            }
            *l = now_leading;
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => {}
            _ = shutdown.changed() => break,
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        if let Err(e) = release(&api, &cfg).await {
            tracing::warn!(error = %e, "could not release the lease; the standby waits for it to expire");
        }
    }
    Ok(())
}

async fn attempt(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Option<(String, Instant)>,
) -> kube::Result<Step> {
    let now = MicroTime(Timestamp::now());
    let duration_secs = i32::try_from(cfg.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        api.create(&PostParams::default(), &lease).await?;
        return Ok(Step::Leading);
    };
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    if observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
        *observed = Some((rv, Instant::now()));
    }
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let their_duration = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(duration_secs)).unwrap_or(15),
    );
    let expired = observed
        .as_ref()
        .is_some_and(|(_, at)| at.elapsed() > their_duration);
    if holder == cfg.identity {
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
    } else if holder.is_empty() || expired {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    } else {
        return Ok(Step::Following);
    }
    // replace carries the resourceVersion: a concurrent writer makes this fail.
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await?;
    Ok(Step::Leading)
}

async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> kube::Result<()> {
    let mut lease = api.get(&cfg.name).await?;
    if let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        api.replace(&cfg.name, &PostParams::default(), &lease)
            .await?;
        tracing::info!("released the lease");
    }
    Ok(())
}
