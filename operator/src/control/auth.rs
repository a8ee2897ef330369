//! Who may speak for a node: a speaker presents a projected ServiceAccount
//! token (audience `barelb-control`) bound to its pod. The apiserver
//! verifies it (TokenReview); we then require the expected service account
//! and that the pod the token is bound to runs on the node the speaker
//! claims — so a stolen token cannot announce for another node — and that
//! the connection does not come from another node's address (a token
//! copied off its node and replayed from a second one).

use std::collections::BTreeMap;
use std::net::IpAddr;

use barelb_control::TOKEN_AUDIENCE;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};

const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// Why a speaker was refused; `reason()` labels the metric.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("no bearer token")]
    NoToken,
    #[error("token not accepted: {0}")]
    InvalidToken(String),
    #[error("token is not for the barelb-control audience: {0}")]
    WrongAudience(String),
    #[error("token belongs to {0}, not the speaker's service account")]
    WrongServiceAccount(String),
    #[error("token is not bound to a pod")]
    NotPodBound,
    #[error("token is bound to a pod on node {actual:?}, not {claimed:?}")]
    WrongNode { claimed: String, actual: String },
    #[error("connection for node {claimed:?} comes from {from}, an address of node {owner:?}")]
    WrongSource {
        claimed: String,
        from: IpAddr,
        owner: String,
    },
    #[error("could not verify the token: {0}")]
    Unavailable(String),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoToken => "no-token",
            Refusal::InvalidToken(_) => "invalid-token",
            Refusal::WrongAudience(_) => "wrong-audience",
            Refusal::WrongServiceAccount(_) => "wrong-service-account",
            Refusal::NotPodBound => "not-pod-bound",
            Refusal::WrongNode { .. } => "wrong-node",
            Refusal::WrongSource { .. } => "wrong-source",
            Refusal::Unavailable(_) => "unavailable",
        }
    }
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
    pub pod: String,
    pub pod_uid: Option<String>,
    /// Present when the apiserver binds node info into tokens (1.32+).
    pub node: Option<String>,
}

/// Reads a TokenReview's status (plain data; unit-tested).
pub fn identity(status: &TokenReviewStatus) -> Result<Identity, Refusal> {
    if status.authenticated != Some(true) {
        let error = status
            .error
            .clone()
            .unwrap_or_else(|| "not authenticated".into());
        // The apiserver refuses a token for another audience outright
        // ("token audiences [...] is invalid for the target audiences").
        return Err(if error.contains("audiences") {
            Refusal::WrongAudience(error)
        } else {
            Refusal::InvalidToken(error)
        });
    }
    if !status
        .audiences
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| x == TOKEN_AUDIENCE))
    {
        return Err(Refusal::WrongAudience(
            status.audiences.clone().unwrap_or_default().join(","),
        ));
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let Some(rest) = username.strip_prefix("system:serviceaccount:") else {
        return Err(Refusal::WrongServiceAccount(username));
    };
    let Some((namespace, sa)) = rest.split_once(':') else {
        return Err(Refusal::WrongServiceAccount(username));
    };
    let extra: BTreeMap<String, Vec<String>> = user.extra.unwrap_or_default();
    let first = |k: &str| extra.get(k).and_then(|v| v.first()).cloned();
    Ok(Identity {
        namespace: namespace.into(),
        service_account: sa.into(),
        pod: first(EXTRA_POD_NAME).ok_or(Refusal::NotPodBound)?,
        pod_uid: first(EXTRA_POD_UID),
        node: first(EXTRA_NODE_NAME),
    })
}

/// The addresses each node may connect from: its Node's
/// `status.addresses` (as /32 or /128) and `spec.podCIDRs` (a host-network
/// speaker's connection may be masqueraded to its node's bridge address).
pub type NodeSources = BTreeMap<String, Vec<ipnet::IpNet>>;

/// Whether a connection from `from` may speak for node `claimed`: refused
/// when the address belongs to another node (a token replayed from there).
/// An address no node lists is let through: a node may reach the operator
/// from an address its Node does not name (a second interface, SNAT), and
/// the token has already tied the speaker to its node.
pub fn check_source(claimed: &str, from: IpAddr, nodes: &NodeSources) -> Result<(), Refusal> {
    let from = from.to_canonical();
    let has = |nets: &[ipnet::IpNet]| nets.iter().any(|n| n.contains(&from));
    if nodes.get(claimed).is_some_and(|nets| has(nets)) {
        return Ok(());
    }
    match nodes
        .iter()
        .find(|(name, nets)| *name != claimed && has(nets))
    {
        Some((owner, _)) => Err(Refusal::WrongSource {
            claimed: claimed.into(),
            from,
            owner: owner.clone(),
        }),
        None => Ok(()),
    }
}

/// TokenReviews in flight at once. After a leader change every speaker
/// reconnects together; unbounded, each review could open its own
/// connection to the apiserver (a TLS handshake on both sides), and the
/// burst starves the tasks that answer established speakers' keepalives.
const REVIEWS_IN_FLIGHT: usize = 16;

/// Verifies speakers against the apiserver.
#[derive(Clone)]
pub struct Authenticator {
    client: Client,
    /// `namespace/name` the speaker must run as; None: any.
    service_account: Option<(String, String)>,
    reviews: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("service_account", &self.service_account)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(client: Client, service_account: Option<(String, String)>) -> Self {
        Authenticator {
            client,
            service_account,
            reviews: std::sync::Arc::new(tokio::sync::Semaphore::new(REVIEWS_IN_FLIGHT)),
        }
    }

    /// Checks `token` and that its pod runs on `node`.
    pub async fn check(&self, token: &str, node: &str) -> Result<Identity, Refusal> {
        let _turn = self
            .reviews
            .acquire()
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let done = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let id = identity(&done.status.unwrap_or_default())?;
        if let Some((ns, name)) = &self.service_account
            && (&id.namespace != ns || &id.service_account != name)
        {
            return Err(Refusal::WrongServiceAccount(format!(
                "{}/{}",
                id.namespace, id.service_account
            )));
        }
        let actual = match &id.node {
            Some(n) => n.clone(),
            None => {
                // Older apiservers: look the pod up.
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &id.namespace);
                let pod = pods
                    .get_opt(&id.pod)
                    .await
                    .map_err(|e| Refusal::Unavailable(e.to_string()))?
                    .ok_or(Refusal::NotPodBound)?;
                if id.pod_uid.is_some() && pod.metadata.uid != id.pod_uid {
                    return Err(Refusal::NotPodBound);
                }
                pod.spec.and_then(|s| s.node_name).unwrap_or_default()
            }
        };
        if actual != node {
            return Err(Refusal::WrongNode {
                claimed: node.into(),
                actual,
            });
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn status(aud: &str, user: &str, extra: &[(&str, &str)]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec![aud.into()]),
            user: Some(UserInfo {
                username: Some(user.into()),
                extra: Some(
                    extra
                        .iter()
                        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                        .collect(),
                ),
                ..UserInfo::default()
            }),
            error: None,
        }
    }

    #[test]
    fn a_pod_bound_token_yields_its_identity() {
        let id = identity(&status(
            "barelb-control",
            "system:serviceaccount:barelb-system:barelb-speaker",
            &[(EXTRA_POD_NAME, "speaker-x"), (EXTRA_NODE_NAME, "node-1")],
        ))
        .unwrap();
        assert_eq!(id.namespace, "barelb-system");
        assert_eq!(id.service_account, "barelb-speaker");
        assert_eq!(id.pod, "speaker-x");
        assert_eq!(id.node.as_deref(), Some("node-1"));
    }

    #[test]
    fn bad_tokens_are_refused_with_their_reason() {
        let mut s = status("barelb-control", "system:serviceaccount:a:b", &[]);
        assert_eq!(identity(&s).unwrap_err(), Refusal::NotPodBound);
        s = status(
            "https://kubernetes.default.svc",
            "system:serviceaccount:a:b",
            &[],
        );
        assert_eq!(identity(&s).unwrap_err().reason(), "wrong-audience");
        s = status("barelb-control", "lab-admin", &[]);
        assert_eq!(identity(&s).unwrap_err().reason(), "wrong-service-account");
        s.authenticated = Some(false);
        assert_eq!(identity(&s).unwrap_err().reason(), "invalid-token");
        s.error = Some(
            r#"[invalid bearer token, token audiences ["https://kubernetes.default.svc"] is invalid for the target audiences ["barelb-control"]]"#.into(),
        );
        assert_eq!(identity(&s).unwrap_err().reason(), "wrong-audience");
    }

    #[test]
    fn a_connection_from_another_nodes_address_is_refused() {
        let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
        let nodes = NodeSources::from([
            (
                "a".into(),
                vec![net("198.18.0.10/32"), net("10.244.0.0/24")],
            ),
            ("b".into(), vec![net("198.18.0.11/32"), net("fd00::11/128")]),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Its own address, its pod network, an address nobody lists.
        for from in [
            "198.18.0.10",
            "10.244.0.1",
            "192.0.2.7",
            "::ffff:198.18.0.10",
        ] {
            assert_eq!(check_source("a", ip(from), &nodes), Ok(()), "{from}");
        }
        // b's addresses, IPv4-mapped too.
        for from in ["198.18.0.11", "fd00::11", "::ffff:198.18.0.11"] {
            let e = check_source("a", ip(from), &nodes).unwrap_err();
            assert_eq!(e.reason(), "wrong-source", "{from}");
            assert!(e.to_string().contains("node \"b\""), "{e}");
        }
        // A node the operator does not know yet claims b's address.
        assert_eq!(
            check_source("new", ip("198.18.0.11"), &nodes)
                .unwrap_err()
                .reason(),
            "wrong-source"
        );
    }
}
