//! barelb's objects in a pool repo: AddressPools, LoadBalancerPolicies and
//! BGPPeers read from YAML streams, each with the file and line it came
//! from. Other kinds (Namespaces, kustomizations' extras) are skipped.

use std::collections::BTreeMap;
use std::fmt;

use barelb_api::{AddressPool, BGPPeer, LoadBalancerPolicy};
use serde::de::DeserializeOwned;

/// Where an object was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.as_str(), self.line) {
            ("", _) => write!(f, "(pool repo)"),
            (file, 0) => write!(f, "{file}"),
            (file, line) => write!(f, "{file}:{line}"),
        }
    }
}

/// A pool repo that cannot be read: the file, line and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct LoadError {
    pub origin: Origin,
    pub message: String,
}

/// One side of a pool repo, by name.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub pools: BTreeMap<String, (AddressPool, Origin)>,
    pub policies: BTreeMap<String, (LoadBalancerPolicy, Origin)>,
    pub peers: BTreeMap<String, (BGPPeer, Origin)>,
}

impl Objects {
    /// Adds every barelb object of the YAML stream `text` (of `file`).
    pub fn add_stream(&mut self, text: &str, file: &str) -> Result<(), LoadError> {
        for (line, doc) in documents(text) {
            let origin = Origin {
                file: file.to_string(),
                line,
            };
            let value: serde_yaml::Value = serde_yaml::from_str(doc).map_err(|e| LoadError {
                origin: Origin {
                    file: file.to_string(),
                    line: line + e.location().map_or(0, |l| l.line().saturating_sub(1)),
                },
                message: format!("not YAML: {e}"),
            })?;
            if value.is_null() {
                continue;
            }
            self.add(value, origin)?;
        }
        Ok(())
    }

    fn add(&mut self, value: serde_yaml::Value, origin: Origin) -> Result<(), LoadError> {
        let api = value["apiVersion"].as_str().unwrap_or_default();
        if api.split('/').next() != Some(barelb_api::GROUP) {
            return Ok(());
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let fail = |message: String| LoadError {
            origin: origin.clone(),
            message,
        };
        if name.is_empty() {
            return Err(fail(format!("a {kind} without metadata.name")));
        }
        let fresh = match kind.as_str() {
            "AddressPool" => insert(&mut self.pools, typed(value, &kind, &name), &name, &origin),
            "LoadBalancerPolicy" => {
                insert(&mut self.policies, typed(value, &kind, &name), &name, &origin)
            }
            "BGPPeer" => insert(&mut self.peers, typed(value, &kind, &name), &name, &origin),
            other => {
                return Err(fail(format!(
                    "{other} {name}: not a barelb.io kind (AddressPool, LoadBalancerPolicy, BGPPeer)"
                )));
            }
        }
        .map_err(fail)?;
        if !fresh {
            return Err(fail(format!("{kind} {name} is defined twice")));
        }
        Ok(())
    }
}

/// Adds `object` under `name`; false when that name was already there.
fn insert<K>(
    map: &mut BTreeMap<String, (K, Origin)>,
    object: Result<K, String>,
    name: &str,
    origin: &Origin,
) -> Result<bool, String> {
    Ok(map
        .insert(name.to_string(), (object?, origin.clone()))
        .is_none())
}

fn typed<K: DeserializeOwned>(
    value: serde_yaml::Value,
    kind: &str,
    name: &str,
) -> Result<K, String> {
    serde_yaml::from_value(value).map_err(|e| format!("{kind} {name}: {e}"))
}

/// The documents of a YAML stream, each with the line (1-based) it starts on.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start_byte, mut start_line) = (0usize, 1usize);
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {name: a}\nspec: {addresses: [10.0.0.0/24], announce: {mode: L2}}\n";

    #[test]
    fn objects_keep_their_file_and_line() {
        let text = format!(
            "# pools\n---\n{POOL}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n{}",
            POOL.replace("name: a", "name: b")
        );
        let mut o = Objects::default();
        o.add_stream(&text, "pools.yaml").unwrap();
        assert_eq!(o.pools["a"].1.to_string(), "pools.yaml:3");
        assert_eq!(o.pools["b"].1.to_string(), "pools.yaml:12");
        assert_eq!(o.pools.len(), 2);
    }

    #[test]
    fn broken_yaml_and_wrong_fields_name_the_file_and_line() {
        let mut o = Objects::default();
        let e = o
            .add_stream(&format!("{POOL}---\nkind: [\n"), "p.yaml")
            .unwrap_err();
        assert_eq!(e.origin.to_string(), "p.yaml:7", "{e}");
        assert!(e.message.starts_with("not YAML"), "{e}");

        let bad = POOL.replace("addresses: [10.0.0.0/24]", "addresses: 7");
        let e = Objects::default().add_stream(&bad, "q.yaml").unwrap_err();
        assert!(
            e.to_string().starts_with("q.yaml:1: AddressPool a: "),
            "{e}"
        );

        let e = Objects::default()
            .add_stream(&format!("{POOL}---\n{POOL}"), "d.yaml")
            .unwrap_err();
        assert_eq!(e.to_string(), "d.yaml:6: AddressPool a is defined twice");
    }
}
