//! What `plan` needs of a cluster — its Services and Namespaces — read live
//! or from a file `kubectl barelb snapshot` wrote (for CI without access to
//! the cluster). The same evaluation runs on either.

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};

/// A cluster's Services and Namespaces at one moment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always "barelb.io/snapshot/v1": a file of another kind is refused.
    pub kind: String,
    pub services: Vec<Service>,
    pub namespaces: Vec<Namespace>,
}

pub const KIND: &str = "barelb.io/snapshot/v1";

impl Snapshot {
    /// Lists every Service and Namespace the client may read.
    pub async fn fetch(client: &kube::Client) -> anyhow::Result<Snapshot> {
        let lp = ListParams::default();
        let services = Api::<Service>::all(client.clone())
            .list(&lp)
            .await
            .map_err(|e| anyhow::anyhow!("list Services: {e}"))?
            .items;
        let namespaces = Api::<Namespace>::all(client.clone())
            .list(&lp)
            .await
            .map_err(|e| anyhow::anyhow!("list Namespaces: {e}"))?
            .items;
        Ok(Snapshot {
            kind: KIND.into(),
            services,
            namespaces,
        })
    }

    /// Reads a file `kubectl barelb snapshot` wrote.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Snapshot> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--snapshot {}: {e}", path.display()))?;
        let s: Snapshot = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--snapshot {}: not a snapshot ({e}); write one with kubectl barelb snapshot",
                path.display()
            )
        })?;
        if s.kind != KIND {
            anyhow::bail!(
                "--snapshot {}: kind {:?}, expected {KIND}; write one with kubectl barelb snapshot",
                path.display(),
                s.kind
            );
        }
        Ok(s)
    }
}
