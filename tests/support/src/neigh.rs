//! A client's neighbour entries for some addresses, watched with `ip monitor
//! neigh` in the client's namespace: each change is stamped when the kernel
//! reports it. No polling: running `ip neigh` every few milliseconds would
//! take from the two cores what the benchmark measures.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One change of an entry: when, its address, and its link-layer address
/// (None: the entry was deleted or has none, e.g. INCOMPLETE or FAILED).
pub type NeighEvent = (Instant, String, Option<String>);

/// A running `ip monitor neigh`, stopped on drop.
#[derive(Debug)]
pub struct NeighWatch {
    child: Child,
    events: Arc<Mutex<Vec<NeighEvent>>>,
    ns: String,
}

impl NeighWatch {
    /// Starts watching `ips` in namespace `ns`.
    pub fn start(ns: &str, ips: &[String]) -> NeighWatch {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "ip", "monitor", "neigh"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ip monitor neigh");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let want = ips.to_vec();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                for ip in &want {
                    if let Some(mac) = parse_line(&line, ip) {
                        sink.lock()
                            .expect("events lock")
                            .push((now, ip.clone(), mac));
                    }
                }
            }
        });
        NeighWatch {
            child,
            events,
            ns: ns.to_string(),
        }
    }

    /// The entry's link-layer address for `ip` now (`ip neigh show`).
    pub fn current(&self, ip: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["-n", &self.ns, "-j", "neigh", "show", ip])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get(0)?["lladdr"].as_str().map(str::to_lowercase)
    }

    /// The first change of `ip`'s entry after `since` to a link-layer
    /// address other than `from`, waiting up to `timeout`: how long after
    /// `since` it came, and the new address.
    pub fn wait_moved(
        &self,
        ip: &str,
        from: &str,
        since: Instant,
        timeout: Duration,
    ) -> Option<(Duration, String)> {
        let deadline = since + timeout;
        loop {
            let moved = self
                .events
                .lock()
                .expect("events lock")
                .iter()
                .filter(|(t, a, _)| *t >= since && a == ip)
                .find_map(|(t, _, mac)| match mac {
                    Some(m) if m != from => Some((*t - since, m.clone())),
                    _ => None,
                });
            if moved.is_some() || Instant::now() >= deadline {
                return moved;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every change seen so far, oldest first.
    pub fn events(&self) -> Vec<NeighEvent> {
        self.events.lock().expect("events lock").clone()
    }

    /// When any watched entry last changed (None: none since the watch
    /// started).
    pub fn last_change(&self) -> Option<Instant> {
        self.events
            .lock()
            .expect("events lock")
            .last()
            .map(|(t, _, _)| *t)
    }
}

/// The address in a monitor line about `ip`: `Some(Some(mac))` for an
/// entry with one, `Some(None)` for a deleted or unresolved one, `None`
/// for a line about another address.
fn parse_line(line: &str, ip: &str) -> Option<Option<String>> {
    let mut words = line.split_whitespace().peekable();
    let deleted = words.peek() == Some(&"Deleted");
    if deleted {
        words.next();
    }
    if words.next()? != ip {
        return None;
    }
    let words: Vec<&str> = words.collect();
    let mac = words
        .windows(2)
        .find(|w| w[0] == "lladdr")
        .map(|w| w[1].to_lowercase());
    Some(if deleted { None } else { mac })
}

impl Drop for NeighWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn monitor_lines() {
        let ip = "198.19.0.230";
        assert_eq!(
            parse_line(
                "198.19.0.230 dev eth0 lladdr 02:B1:00:00:00:0c REACHABLE",
                ip
            ),
            Some(Some("02:b1:00:00:00:0c".to_string()))
        );
        assert_eq!(
            parse_line(
                "Deleted 198.19.0.230 dev eth0 lladdr 02:b1:00:00:00:0c STALE",
                ip
            ),
            Some(None)
        );
        assert_eq!(
            parse_line("198.19.0.230 dev eth0  INCOMPLETE", ip),
            Some(None)
        );
        assert_eq!(
            parse_line("198.19.0.2300 dev eth0 lladdr 02:b1:00:00:00:0c", ip),
            None
        );
        assert_eq!(
            parse_line("198.19.0.12 dev eth0 lladdr 02:b1:00:00:00:0c STALE", ip),
            None
        );
    }
}
