//! Threads that run CEL programs under a time limit.
//!
//! The interpreter has no cancellation: a rule past its deadline stops only
//! at its next metered step (`super::cost`), which one slow call of the
//! interpreter's can delay. The caller does not wait for that: it gives up
//! at the deadline, the worker is written off and a fresh one takes its
//! place. Written-off workers burn CPU until they stop, so at most
//! `max_runaway` may exist; past that, evaluations are refused at once
//! rather than piling up threads. Workers get a large stack:
//! the interpreter recurses per nesting level, and a stack overflow aborts.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STACK: usize = 64 * 1024 * 1024;

struct Job<T> {
    run: Box<dyn FnOnce() -> T + Send>,
    reply: Sender<T>,
    abandoned: Arc<AtomicBool>,
}

struct Shared<T> {
    queue: Mutex<Receiver<Job<T>>>,
    runaway: AtomicUsize,
}

/// A pool of evaluation threads.
pub(crate) struct Workers<T: Send + 'static> {
    submit: Mutex<Sender<Job<T>>>,
    shared: Arc<Shared<T>>,
    max_runaway: usize,
}

impl<T: Send + 'static> Workers<T> {
    pub(crate) fn new(threads: usize, max_runaway: usize) -> Self {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(rx),
            runaway: AtomicUsize::new(0),
        });
        let workers = Workers {
            submit: Mutex::new(tx),
            shared,
            max_runaway,
        };
        for _ in 0..threads.max(1) {
            workers.spawn_worker();
        }
        workers
    }

    fn spawn_worker(&self) {
        let shared = self.shared.clone();
        // If the OS refuses a thread the pool shrinks; run() then times out
        // and reports it, which is the right signal to an operator.
        let _ = std::thread::Builder::new()
            .name("barelb-cel".into())
            .stack_size(STACK)
            .spawn(move || worker(&shared));
    }

    /// Runs `f` on a worker; a panic or a run longer than `limit` becomes
    /// an `Err` naming what happened.
    pub(crate) fn run(
        &self,
        limit: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        if self.shared.runaway.load(Ordering::Relaxed) >= self.max_runaway {
            return Err(format!(
                "{} earlier rules are still running past their time limit; refusing until they finish",
                self.max_runaway
            ));
        }
        let (reply, rx) = mpsc::channel();
        let abandoned = Arc::new(AtomicBool::new(false));
        let job = Job {
            run: Box::new(f),
            reply,
            abandoned: abandoned.clone(),
        };
        let sent = self
            .submit
            .lock()
            .map_err(|_| "evaluation pool is poisoned".to_string())?
            .send(job);
        if sent.is_err() {
            return Err("no evaluation thread is available".into());
        }
        match rx.recv_timeout(limit) {
            Ok(v) => Ok(v),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                abandoned.store(true, Ordering::SeqCst);
                self.shared.runaway.fetch_add(1, Ordering::SeqCst);
                self.spawn_worker();
                Err(format!("rule took longer than {limit:?}; simplify it"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("the CEL interpreter failed on this rule".into())
            }
        }
    }
}

fn worker<T: Send + 'static>(shared: &Shared<T>) {
    loop {
        let job = match shared.queue.lock() {
            Ok(q) => match q.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        // A panic drops `reply`; the caller sees Disconnected.
        if let Ok(v) = catch_unwind(AssertUnwindSafe(job.run)) {
            let _ = job.reply.send(v);
        }
        if job.abandoned.load(Ordering::SeqCst) {
            // A replacement was started when this job was given up on.
            shared.runaway.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    }
}

impl<T: Send + 'static> Workers<T> {
    /// Workers given up on that are still running.
    pub(crate) fn runaway(&self) -> usize {
        self.shared.runaway.load(Ordering::Relaxed)
    }
}

impl<T: Send + 'static> std::fmt::Debug for Workers<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("runaway", &self.runaway())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_panics_and_timeouts() {
        let w: Workers<u32> = Workers::new(2, 1);
        assert_eq!(w.run(Duration::from_secs(5), || 7), Ok(7));
        assert!(
            w.run(Duration::from_secs(5), || panic!("boom"))
                .unwrap_err()
                .contains("failed")
        );
        let slow = w.run(Duration::from_millis(20), || {
            std::thread::sleep(Duration::from_millis(300));
            1
        });
        assert!(slow.unwrap_err().contains("longer than"));
        // One runaway is the limit: refused at once while it runs...
        assert!(
            w.run(Duration::from_secs(5), || 2)
                .unwrap_err()
                .contains("still running")
        );
        // ...and served again once it has finished.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(w.run(Duration::from_secs(5), || 3), Ok(3));
    }
}
