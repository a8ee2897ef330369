//! tshark as a test's witness. Ready when tshark says its capture has
//! started, not after a guessed sleep (on a busy machine tshark takes
//! seconds to start, and a fixed window lost the last announcement rounds);
//! fields streamed line by line so a test waits for what it expects instead
//! of a fixed duration; stopped by PID on [`Capture::stop`] or drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long tshark may take to open its capture (seconds on a loaded CI
/// machine; more than this and something is wrong).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running tshark printing `fields` of every packet matching a capture
/// filter, one row of strings per packet.
#[derive(Debug)]
pub struct Capture {
    tshark: Child,
    rows: Arc<Mutex<Vec<Vec<String>>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    /// Starts tshark in network namespace `ns` on `iface` and returns once
    /// the capture is open.
    pub fn start(ns: &str, iface: &str, filter: &str, fields: &[&str]) -> anyhow::Result<Capture> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "tshark", "-i", iface, "-l", "-n"])
            .args(["-f", filter, "-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let mut tshark = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start tshark")?;
        let (stdout, stderr) = match (tshark.stdout.take(), tshark.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => bail!("tshark's pipes were not opened"),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        // Drains stderr for the whole run so tshark never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Capture started") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let rows = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&rows);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let row = line.split('\t').map(str::to_string).collect();
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(row);
            }
        });
        let mut capture = Capture {
            tshark,
            rows,
            reader: Some(reader),
        };
        if ready_rx.recv_timeout(READY_WITHIN).is_err() {
            capture.kill();
            bail!("tshark on {ns}/{iface} did not start capturing within {READY_WITHIN:?}");
        }
        Ok(capture)
    }

    /// The rows so far.
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `enough` holds for the rows so far, or `within` passes;
    /// returns whether it held.
    pub fn wait_until(&self, within: Duration, enough: impl Fn(&[Vec<String>]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if enough(&self.rows()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops tshark and returns every row it printed.
    pub fn stop(mut self) -> Vec<Vec<String>> {
        self.kill();
        self.rows()
    }

    /// SIGTERM first so tshark stops its dumpcap child itself; SIGKILL if
    /// it has not gone within 3 s.
    fn kill(&mut self) {
        if !matches!(self.tshark.try_wait(), Ok(None)) {
            return; // already stopped and reaped
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.tshark.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.tshark.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.tshark.kill();
        let _ = self.tshark.wait();
        // With tshark gone its stdout closes; the reader has every line.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
    }
}
