//! [`Holders`]: the Services holding one address.

use crate::request::ServiceKey;

/// The Services holding one address, sorted and without repeats. Nearly
/// always one Service: a `Vec` holds it in one key's room, where a
/// `BTreeSet` allocates a node for eleven (~0.5 KiB an address).
#[derive(Clone, Debug, Default)]
pub(super) struct Holders(Vec<ServiceKey>);

impl Holders {
    pub(super) fn insert(&mut self, key: ServiceKey) {
        if let Err(at) = self.0.binary_search(&key) {
            self.0.insert(at, key);
        }
    }

    pub(super) fn remove(&mut self, key: &ServiceKey) {
        if let Ok(at) = self.0.binary_search(key) {
            self.0.remove(at);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, ServiceKey> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Holders {
    type Item = &'a ServiceKey;
    type IntoIter = std::slice::Iter<'a, ServiceKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn keeps_keys_sorted_and_once() {
        let mut h = Holders::default();
        for n in ["b", "a", "c", "a"] {
            h.insert(key(n));
        }
        let names: Vec<&str> = h.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        h.remove(&key("b"));
        h.remove(&key("x"));
        let names: Vec<&str> = h.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        h.remove(&key("a"));
        h.remove(&key("c"));
        assert!(h.is_empty());
    }
}
