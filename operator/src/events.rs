//! Events on Services, published beside the status path: queued, and sent
//! a few at a time by a task of their own. A burst of allocations puts
//! every address in place before its events compete with it for the
//! apiserver; each change still gets its event, a moment later.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::mpsc;

/// Events published at once (the status writes have `--write-concurrency`).
pub const IN_FLIGHT: usize = 4;

/// The queue's handle.
#[derive(Clone, Debug)]
pub struct Events {
    tx: mpsc::UnboundedSender<(Event, ObjectReference)>,
}

impl Events {
    /// Starts the publishing task (on the current runtime).
    pub fn start(recorder: Recorder) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<(Event, ObjectReference)>();
        tokio::spawn(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).for_each_concurrent(
                IN_FLIGHT,
                move |(event, on)| {
                    let recorder = recorder.clone();
                    async move {
                        if let Err(e) = recorder.publish(&event, &on).await {
                            tracing::warn!(
                                object = ?on.name,
                                namespace = ?on.namespace,
                                reason = %event.reason,
                                error = %e,
                                "could not publish event"
                            );
                        }
                    }
                },
            ),
        );
        Events { tx }
    }

    /// Queues `event` on the object `on`.
    pub fn publish(&self, event: Event, on: ObjectReference) {
        // Fails only once the runtime (and its task) is gone.
        let _ = self.tx.send((event, on));
    }
}
