//! The ValidatingWebhookConfiguration, owned by the operator (applied with
//! server-side apply, `caBundle` included). It is deliberately not a
//! git-owned object: injecting a CA into a file ArgoCD syncs would keep the
//! application OutOfSync forever.
//!
//! An unreachable webhook must never block what is not ours: only Services
//! that are or were `type: LoadBalancer` of a class this instance serves
//! reach it (`matchConditions`), never in kube-system, kube-public or the
//! operator's own namespace; and the configuration is owned by a
//! cluster-scoped object of the install (the operator's ClusterRole), so it
//! goes when barelb is uninstalled.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, OwnerReference,
};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

/// Where the apiserver finds the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `https://host:port` (the lab: the apiserver reaches 127.0.0.1 only).
    Url(String),
    /// A Service in the cluster.
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
}

/// How the webhook is registered.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Name of the ValidatingWebhookConfiguration.
    pub name: String,
    pub endpoint: Endpoint,
    /// `Fail` (default: a webhook outage blocks claims it would judge) or `Ignore`.
    pub failure_policy: String,
    pub timeout_seconds: i32,
    /// Namespaces whose Services are reviewed (label selector; "" = all).
    pub namespace_selector: String,
    /// AddressPools reviewed (the operator's `--pool-selector`).
    pub pool_selector: String,
    /// LoadBalancerPolicies and BGPPeers reviewed (label selector; "" = all).
    pub object_selector: String,
    pub field_manager: String,
    /// The Services this instance serves: only those are sent to it.
    pub class: barelb_core::request::ClassPolicy,
    /// The operator's namespace, never reviewed (nor kube-system, kube-public).
    pub own_namespace: String,
    /// The ClusterRole that owns the configuration ("" = none).
    pub owner_cluster_role: String,
}

/// Namespaces whose Services are never sent to the webhook, whatever the
/// selector: the cluster's own, whose Services must never wait on barelb.
const NEVER_REVIEWED: [&str; 2] = ["kube-system", "kube-public"];

/// The CEL condition under which the apiserver sends a Service to us: it
/// is, or was before this update, a LoadBalancer of a class we serve.
pub fn service_match_condition(class: &barelb_core::request::ClassPolicy) -> String {
    let quoted = class.class.replace('\\', "\\\\").replace('\'', "\\'");
    let ours = |o: &str| {
        let of_class =
            format!("has({o}.spec.loadBalancerClass) && {o}.spec.loadBalancerClass == '{quoted}'");
        let class_ok = if class.handle_classless {
            format!("(!has({o}.spec.loadBalancerClass) || ({of_class}))")
        } else {
            format!("({of_class})")
        };
        format!("(has({o}.spec.type) && {o}.spec.type == 'LoadBalancer' && {class_ok})")
    };
    format!(
        "{} || (oldObject != null && {})",
        ours("object"),
        ours("oldObject")
    )
}

/// Parses an equality-based label selector (`a=b,c!=d,e,!f`).
pub fn parse_selector(s: &str) -> anyhow::Result<LabelSelector> {
    let mut labels = BTreeMap::new();
    let mut exprs = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let req = |key: &str, op: &str, values: Option<Vec<String>>| LabelSelectorRequirement {
            key: key.trim().to_string(),
            operator: op.to_string(),
            values,
        };
        if let Some((k, v)) = part.split_once("!=") {
            exprs.push(req(k, "NotIn", Some(vec![v.trim().to_string()])));
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            labels.insert(k.trim().to_string(), v.trim().to_string());
        } else if let Some(k) = part.strip_prefix('!') {
            exprs.push(req(k, "DoesNotExist", None));
        } else if part.contains(' ') || part.contains('(') {
            anyhow::bail!(
                "label selector {s:?}: only equality-based selectors (a=b, a!=b, a, !a) are supported here"
            );
        } else {
            exprs.push(req(part, "Exists", None));
        }
    }
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    })
}

/// The configuration for `reg`, trusting `ca_pem`.
pub fn build(reg: &Registration, ca_pem: &str) -> anyhow::Result<ValidatingWebhookConfiguration> {
    let client_config = |path: &str| match &reg.endpoint {
        Endpoint::Url(base) => WebhookClientConfig {
            url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None,
        },
        Endpoint::Service {
            namespace,
            name,
            port,
        } => WebhookClientConfig {
            url: None,
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.to_string()),
                port: Some(*port),
            }),
        },
    };
    let rule = |group: &str, version: &str, resource: &str, ops: &[&str]| RuleWithOperations {
        api_groups: Some(vec![group.into()]),
        api_versions: Some(vec![version.into()]),
        resources: Some(vec![resource.into()]),
        operations: Some(ops.iter().map(|o| o.to_string()).collect()),
        scope: None,
    };
    let hook = |name: &str, path: &str, rule: RuleWithOperations| ValidatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        client_config: client_config(path),
        failure_policy: Some(reg.failure_policy.clone()),
        match_policy: Some("Equivalent".into()),
        side_effects: "None".into(),
        timeout_seconds: Some(reg.timeout_seconds),
        rules: Some(vec![rule]),
        ..Default::default()
    };
    let object = parse_selector(&reg.object_selector)?;
    let mut services = hook(
        "services.barelb.io",
        "/validate/services",
        rule("", "v1", "services", &["CREATE", "UPDATE"]),
    );
    let mut namespaces = parse_selector(&reg.namespace_selector)?;
    let mut never: Vec<String> = NEVER_REVIEWED.iter().map(|n| n.to_string()).collect();
    never.push(reg.own_namespace.clone());
    namespaces
        .match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(never),
        });
    services.namespace_selector = Some(namespaces);
    services.match_conditions = Some(vec![MatchCondition {
        name: "loadbalancer-of-our-class".into(),
        expression: service_match_condition(&reg.class),
    }]);
    let mut pools = hook(
        "addresspools.barelb.io",
        "/validate/addresspools",
        rule(
            "barelb.io",
            "*",
            "addresspools",
            &["CREATE", "UPDATE", "DELETE"],
        ),
    );
    pools.object_selector = Some(parse_selector(&reg.pool_selector)?);
    let mut policies = hook(
        "loadbalancerpolicies.barelb.io",
        "/validate/loadbalancerpolicies",
        rule(
            "barelb.io",
            "*",
            "loadbalancerpolicies",
            &["CREATE", "UPDATE"],
        ),
    );
    policies.object_selector = Some(object.clone());
    let mut peers = hook(
        "bgppeers.barelb.io",
        "/validate/bgppeers",
        rule("barelb.io", "*", "bgppeers", &["CREATE", "UPDATE"]),
    );
    peers.object_selector = Some(object);
    Ok(ValidatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(reg.name.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "barelb-operator".to_string(),
            )])),
            ..Default::default()
        },
        webhooks: Some(vec![services, pools, policies, peers]),
    })
}

/// The owner reference to the install's ClusterRole, when it exists: the
/// garbage collector then removes the configuration with barelb.
async fn owner(client: &Client, reg: &Registration) -> anyhow::Result<Option<OwnerReference>> {
    if reg.owner_cluster_role.is_empty() {
        return Ok(None);
    }
    let api: Api<ClusterRole> = Api::all(client.clone());
    let Some(role) = api.get_opt(&reg.owner_cluster_role).await? else {
        tracing::warn!(
            cluster_role = %reg.owner_cluster_role,
            webhook = %reg.name,
            "ClusterRole not found: the ValidatingWebhookConfiguration will outlive barelb; install barelb's RBAC or set --webhook-owner-cluster-role"
        );
        return Ok(None);
    };
    Ok(Some(OwnerReference {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "ClusterRole".into(),
        name: reg.owner_cluster_role.clone(),
        uid: role.metadata.uid.unwrap_or_default(),
        ..Default::default()
    }))
}

/// Applies the configuration (server-side apply, forced: the operator owns it).
pub async fn apply(client: &Client, reg: &Registration, ca_pem: &str) -> anyhow::Result<()> {
    let mut vwc = build(reg, ca_pem)?;
    vwc.metadata.managed_fields = None;
    vwc.metadata.owner_references = owner(client, reg).await?.map(|o| vec![o]);
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut value = serde_json::to_value(&vwc)?;
    value["apiVersion"] = "admissionregistration.k8s.io/v1".into();
    value["kind"] = "ValidatingWebhookConfiguration".into();
    api.patch(
        &reg.name,
        &PatchParams::apply(&reg.field_manager).force(),
        &Patch::Apply(value),
    )
    .await?;
    tracing::info!(name = %reg.name, "ValidatingWebhookConfiguration applied");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use barelb_core::request::{ClassPolicy, ServiceRecord, qualifies};
    use k8s_openapi::api::core::v1::Service;
    use kube_cel::{KubeCelExt, cel};
    use proptest::prelude::*;

    fn service(type_: &str, class: Option<&str>) -> Service {
        let mut spec = serde_json::json!({"type": type_, "ports": [{"port": 80}]});
        if let Some(c) = class {
            spec["loadBalancerClass"] = c.into();
        }
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "s", "namespace": "n"}, "spec": spec}),
        )
        .unwrap()
    }

    /// The apiserver's filter (the matchConditions CEL, evaluated here with
    /// the same CEL library barelb's policies use) against
    /// `request::qualifies`: a Service reaches the webhook exactly when it,
    /// or its old version, is one barelb handles.
    fn admitted_to_webhook(class: &ClassPolicy, new: &Service, old: Option<&Service>) -> bool {
        let program = cel::Program::compile(&service_match_condition(class)).unwrap();
        let mut ctx = cel::Context::default().with_all();
        ctx.add_variable("object", serde_json::to_value(new).unwrap())
            .unwrap();
        let old = old.map_or(serde_json::Value::Null, |o| {
            serde_json::to_value(o).unwrap()
        });
        ctx.add_variable("oldObject", old).unwrap();
        program.execute(&ctx).unwrap() == cel::Value::Bool(true)
    }

    fn any_service() -> impl Strategy<Value = Service> {
        (
            prop_oneof![
                Just("ClusterIP"),
                Just("NodePort"),
                Just("LoadBalancer"),
                Just("ExternalName")
            ],
            prop_oneof![
                Just(None),
                Just(Some("barelb.io/lb")),
                Just(Some("other.example/lb")),
                Just(Some("it's/odd"))
            ],
        )
            .prop_map(|(t, c)| service(t, c))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn the_match_condition_sends_exactly_the_services_barelb_handles(
            new in any_service(),
            old in proptest::option::of(any_service()),
            handle_classless in any::<bool>(),
            odd_class in any::<bool>(),
        ) {
            let class = ClassPolicy {
                class: if odd_class { "it's/odd".into() } else { "barelb.io/lb".into() },
                handle_classless,
            };
            let ours = qualifies(&ServiceRecord::of(&new), &class)
                || old.as_ref().is_some_and(|o| qualifies(&ServiceRecord::of(o), &class));
            prop_assert_eq!(admitted_to_webhook(&class, &new, old.as_ref()), ours);
        }
    }

    #[test]
    fn selectors_parse() {
        let s = parse_selector("a=b, c!=d,e,!f").unwrap();
        assert_eq!(s.match_labels.unwrap()["a"], "b");
        let ops: Vec<String> = s
            .match_expressions
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.key, e.operator))
            .collect();
        assert_eq!(ops, ["c NotIn", "e Exists", "f DoesNotExist"]);
        assert_eq!(parse_selector("").unwrap(), LabelSelector::default());
        assert!(parse_selector("env in (a,b)").is_err());
    }
}
