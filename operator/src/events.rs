//! Events on Services, published beside the status path: queued, and sent
//! a few at a time by a task of their own, while no status writes are in
//! flight ([`Events::busy`]). A burst of allocations puts every address in
//! place before its events compete with it for the apiserver; each change
//! still gets its event, a moment later.
//!
//! Written here rather than with kube's `Recorder`, which keeps every event
//! it published in the last 6 minutes, whole, to count repeats: after
//! 10,000 Services were addressed that was ~35 MiB of the operator's memory
//! (the table never shrinks). Repeats are counted the same way
//! (events.k8s.io `series`), remembering only each event's name.

mod series;

use barelb_core::request::ServiceRecord;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Event;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

use crate::retry::FailureLog;
pub use series::Writer;

/// Events published at once (the status writes have `--write-concurrency`).
pub const IN_FLIGHT: usize = 4;

/// The queue's handle.
#[derive(Clone, Debug)]
pub struct Events {
    tx: mpsc::UnboundedSender<(Event, ObjectReference)>,
    /// Batches of status writes in flight: events wait while any are.
    busy: std::sync::Arc<watch::Sender<usize>>,
}

/// Marks a batch of status writes in flight until dropped.
#[derive(Debug)]
pub struct Busy(std::sync::Arc<watch::Sender<usize>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Events {
    /// Starts the publishing task (on the current runtime).
    pub fn start(writer: Writer) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<(Event, ObjectReference)>();
        let busy = std::sync::Arc::new(watch::Sender::new(0usize));
        let quiet = busy.subscribe();
        // One line per interval, not one per event: a burst that fails
        // together (the apiserver away, or the process ending with events
        // queued) would otherwise flood the log.
        let failures = std::sync::Arc::new(std::sync::Mutex::new(FailureLog::not_retried(
            "event",
            std::time::Duration::from_secs(10),
        )));
        tokio::spawn(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).for_each_concurrent(
                IN_FLIGHT,
                move |(event, on)| {
                    let writer = writer.clone();
                    let mut quiet = quiet.clone();
                    let failures = failures.clone();
                    async move {
                        // Errs only when the sender is gone: publish anyway.
                        let _ = quiet.wait_for(|n| *n == 0).await;
                        if let Err(e) = writer.publish(&event, &on).await {
                            let object = format!(
                                "{} {}/{}",
                                event.reason,
                                on.namespace.as_deref().unwrap_or(""),
                                on.name.as_deref().unwrap_or("")
                            );
                            let line = match failures.lock() {
                                Ok(mut f) => f.record(&object, &e.to_string(), Instant::now()),
                                // Poisoned only if a holder panicked: say it anyway.
                                Err(_) => Some(format!("could not publish event {object}: {e}")),
                            };
                            if let Some(line) = line {
                                tracing::warn!("{line}");
                            }
                        }
                    }
                },
            ),
        );
        Events { tx, busy }
    }

    /// Status writes are going out until the guard is dropped: events wait.
    pub fn busy(&self) -> Busy {
        self.busy.send_modify(|n| *n += 1);
        Busy(self.busy.clone())
    }

    /// Queues `event` on the object `on`.
    pub fn publish(&self, mut event: Event, on: ObjectReference) {
        if let Some(note) = &event.note {
            event.note = Some(barelb_core::text::one_line(note).into_owned());
        }
        // Fails only once the runtime (and its task) is gone.
        let _ = self.tx.send((event, on));
    }
}

/// The reference an event about `svc` names (as `Resource::object_ref` would
/// build from the whole object).
pub fn service_ref(svc: &ServiceRecord) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some(svc.key.name.clone()),
        namespace: Some(svc.key.namespace.clone()),
        uid: svc.uid.clone(),
        resource_version: (svc.resource_version > 0).then(|| svc.resource_version.to_string()),
        field_path: None,
    }
}
