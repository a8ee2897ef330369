//! Writes one event: a new events.k8s.io Event, or, for a repeat within
//! [`SERIES_TTL`] of the same event on the same object, a count on the
//! first one's `series` (as client-go's and kube's recorders do).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};

/// How long a repeat is counted on the first event rather than written anew.
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// How often expired repeats are forgotten: not on every event, which
/// would walk every remembered one each time.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

const CONTROLLER: &str = "barelb-operator";

/// Publishes events as this operator instance.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    instance: String,
    recent: Arc<Mutex<Recent>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The events written in the last [`SERIES_TTL`]: only what a repeat needs.
#[derive(Debug)]
struct Recent {
    /// By a hash of what makes two events the same (see [`key`]): a
    /// collision of 64-bit hashes among minutes of events would only count
    /// one event's repeat on another.
    series: HashMap<u64, Series>,
    pruned: Instant,
}

#[derive(Debug)]
struct Series {
    /// The first event's name, in the namespace of the object it regards.
    name: String,
    count: i32,
    last: Instant,
}

impl Recent {
    /// The repeat count of `key` now, if it is a repeat (and counts it).
    fn repeat(&mut self, key: u64, now: Instant) -> Option<(String, i32)> {
        if now.duration_since(self.pruned) >= PRUNE_EVERY {
            self.series
                .retain(|_, s| now.duration_since(s.last) < SERIES_TTL);
            // A burst's table would otherwise stay at its largest size.
            self.series.shrink_to_fit();
            self.pruned = now;
        }
        let s = self
            .series
            .get_mut(&key)
            .filter(|s| now.duration_since(s.last) < SERIES_TTL)?;
        s.count += 1;
        s.last = now;
        Some((s.name.clone(), s.count))
    }

    fn remember(&mut self, key: u64, name: String, now: Instant) {
        let series = Series {
            name,
            count: 1,
            last: now,
        };
        self.series.insert(key, series);
    }
}

/// What makes two events the same: kube's recorder's key (type, action,
/// reason, the object regarded and the related one; not the note).
fn key(ev: &Event, on: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    matches!(ev.type_, EventType::Warning).hash(&mut h);
    (&ev.action, &ev.reason).hash(&mut h);
    for r in std::iter::once(on).chain(ev.secondary.as_ref()) {
        (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid).hash(&mut h);
    }
    h.finish()
}

impl Writer {
    pub fn new(client: Client, instance: &str) -> Self {
        Writer {
            client,
            instance: instance.to_string(),
            recent: Arc::new(Mutex::new(Recent {
                series: HashMap::new(),
                pruned: Instant::now(),
            })),
        }
    }

    /// Writes `ev` about `on`.
    pub async fn publish(&self, ev: &Event, on: &ObjectReference) -> kube::Result<()> {
        let key = key(ev, on);
        let now = Instant::now();
        let api: Api<K8sEvent> = Api::namespaced(
            self.client.clone(),
            on.namespace.as_deref().unwrap_or("default"),
        );
        // Poisoned only if a holder panicked: write the event as new.
        let repeat = self.recent.lock().ok().and_then(|mut r| r.repeat(key, now));
        if let Some((name, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(Timestamp::now()),
            };
            let patch = serde_json::json!({ "series": series });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // Gone (deleted, or expired early): written anew below.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                other => return other.map(drop),
            }
        }
        let event = self.event(ev, on);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        if let Ok(mut r) = self.recent.lock() {
            r.remember(key, name, now);
        }
        Ok(())
    }

    fn event(&self, ev: &Event, on: &ObjectReference) -> K8sEvent {
        let now = Timestamp::now();
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(on.clone()),
            related: ev.secondary.clone(),
            metadata: ObjectMeta {
                namespace: on.namespace.clone(),
                // Unique per object and nanosecond, as kubectl and
                // client-go name theirs.
                name: Some(format!(
                    "{}.{:x}",
                    on.name.as_deref().unwrap_or(CONTROLLER),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(CONTROLLER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..K8sEvent::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Allocate".into(),
            secondary: None,
        }
    }

    fn on(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Service".into()),
            namespace: Some("shop".into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn the_same_event_on_the_same_object_is_one_key_whatever_its_note() {
        let web = on("web");
        assert_eq!(
            key(&event("PoolExhausted", "a"), &web),
            key(&event("PoolExhausted", "b"), &web)
        );
        assert_ne!(
            key(&event("PoolExhausted", "a"), &web),
            key(&event("IPAllocated", "a"), &web)
        );
        assert_ne!(
            key(&event("PoolExhausted", "a"), &web),
            key(&event("PoolExhausted", "a"), &on("api"))
        );
    }

    #[test]
    fn repeats_are_counted_until_they_expire_and_expired_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut r = Recent {
            series: HashMap::new(),
            pruned: t0,
        };
        assert_eq!(r.repeat(1, t0), None);
        r.remember(1, "web.1".into(), t0);
        r.remember(2, "api.1".into(), t0);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(r.repeat(1, t1), Some(("web.1".into(), 2)));
        assert_eq!(r.repeat(1, t1), Some(("web.1".into(), 3)));
        // Six minutes after its last repeat it is a new event; the other,
        // never repeated, is forgotten at the next prune.
        let t2 = t1 + SERIES_TTL;
        assert_eq!(r.repeat(1, t2), None);
        assert!(r.series.is_empty(), "{:?}", r.series);
    }
}
