//! barelb-operator: allocates addresses to LoadBalancer Services from
//! AddressPools, keeps them stable, and reports through Service status,
//! events and Prometheus metrics.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use barelb_core::request::ClassPolicy;
use barelb_operator::admission::View;
use barelb_operator::control;
use barelb_operator::controller::{self, Settings};
use barelb_operator::leader::{self, LeaseConfig};
use barelb_operator::metrics::{self, Metrics};
use barelb_operator::webhook::config::{Endpoint, Registration};
use barelb_operator::webhook::{self, SharedView};
use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// barelb-operator — LoadBalancer addresses for clusters with no cloud.
///
/// Runs in a cluster (service account) or outside one (KUBECONFIG).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Log format: text, or json (one object per line).
    #[arg(long, env = "BARELB_LOG_FORMAT", default_value = "text")]
    log_format: barelb_runtime::LogFormat,

    /// Namespace of the operator's own objects (leader Lease, Secrets).
    #[arg(long, env = "POD_NAMESPACE", default_value = "barelb-system")]
    namespace: String,

    /// Handle LoadBalancer Services that set no spec.loadBalancerClass
    /// (`--handle-classless=false` to serve only class barelb.io/lb).
    #[arg(long, env = "BARELB_HANDLE_CLASSLESS", default_value_t = true, action = clap::ArgAction::Set)]
    handle_classless: bool,

    /// The spec.loadBalancerClass this instance serves. Several barelb
    /// instances can share a cluster with distinct classes and pool selectors.
    #[arg(long, env = "BARELB_LOAD_BALANCER_CLASS", default_value = barelb_api::LOAD_BALANCER_CLASS)]
    load_balancer_class: String,

    /// Label selector of the AddressPools this instance uses (e.g.
    /// `barelb.io/instance=edge`). Default: every pool.
    #[arg(long, env = "BARELB_POOL_SELECTOR", default_value = "")]
    pool_selector: String,

    /// Refuse claims on AddressPools that no LoadBalancerPolicy selects
    /// (default: such pools are open to every namespace).
    #[arg(long, env = "BARELB_DEFAULT_DENY_POOLS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    default_deny_pools: bool,

    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "BARELB_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    metrics_addr: SocketAddr,

    /// This replica's identity in leader election. Default: POD_NAME, else host name and process id.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// How long a leader's Lease is honoured without renewal.
    #[arg(long, default_value = "15s", value_parser = barelb_core::duration::parse)]
    lease_duration: Duration,

    /// A leader that could not renew for this long steps down.
    #[arg(long, default_value = "10s", value_parser = barelb_core::duration::parse)]
    renew_deadline: Duration,

    /// How often the Lease is renewed or tried.
    #[arg(long, default_value = "2s", value_parser = barelb_core::duration::parse)]
    retry_period: Duration,

    /// Status writes to the apiserver in flight at once.
    #[arg(long, default_value_t = 32)]
    write_concurrency: usize,

    /// Serve the validating admission webhook and keep its
    /// ValidatingWebhookConfiguration current (`--webhook=false` to turn off).
    #[arg(long, env = "BARELB_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set)]
    webhook: bool,

    /// Address the webhook listens on (HTTPS).
    #[arg(long, env = "BARELB_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    webhook_addr: SocketAddr,

    /// URL the apiserver calls (e.g. https://127.0.0.1:9443 when the
    /// apiserver has no route to Services). Default: Service --webhook-service.
    #[arg(long, env = "BARELB_WEBHOOK_URL")]
    webhook_url: Option<String>,

    /// Service (in --namespace) in front of the webhook, and its port.
    #[arg(
        long,
        env = "BARELB_WEBHOOK_SERVICE",
        default_value = "barelb-webhook:443"
    )]
    webhook_service: String,

    /// Name of the ValidatingWebhookConfiguration the operator owns.
    #[arg(long, env = "BARELB_WEBHOOK_CONFIG", default_value = "barelb")]
    webhook_config_name: String,

    /// ClusterRole of the install that owns the ValidatingWebhookConfiguration,
    /// so uninstalling barelb removes it ("" = no owner).
    #[arg(
        long,
        env = "BARELB_WEBHOOK_OWNER_CLUSTER_ROLE",
        default_value = "barelb-operator"
    )]
    webhook_owner_cluster_role: String,

    /// What the apiserver does when the webhook cannot be reached: Fail or Ignore.
    /// The allocator enforces policy either way.
    #[arg(long, env = "BARELB_WEBHOOK_FAILURE_POLICY", default_value = "Fail", value_parser = ["Fail", "Ignore"])]
    webhook_failure_policy: String,

    /// After SIGTERM, how long the webhook goes on answering (each answer
    /// closing its connection) before it stops: the apiserver keeps
    /// reusing its HTTP/1.1 connections to a terminating Pod, and one
    /// closed under a request fails that request.
    #[arg(long, default_value = "3s", value_parser = barelb_core::duration::parse)]
    webhook_drain: Duration,

    /// Seconds the apiserver waits for the webhook (1-30).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=30))]
    webhook_timeout: i32,

    /// Namespaces whose Services are reviewed (label selector; default all).
    #[arg(long, env = "BARELB_WEBHOOK_NAMESPACE_SELECTOR", default_value = "")]
    webhook_namespace_selector: String,

    /// LoadBalancerPolicies and BGPPeers reviewed (label selector; default all).
    /// AddressPools reviewed follow --pool-selector.
    #[arg(long, env = "BARELB_WEBHOOK_OBJECT_SELECTOR", default_value = "")]
    webhook_object_selector: String,

    /// Secret (in --namespace) holding the webhook CA; created if absent.
    #[arg(
        long,
        env = "BARELB_WEBHOOK_CA_SECRET",
        default_value = "barelb-webhook-ca"
    )]
    webhook_ca_secret: String,

    /// Directory with tls.crt, tls.key and ca.crt from cert-manager: use
    /// them instead of the operator's own CA.
    #[arg(long, env = "BARELB_WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<std::path::PathBuf>,
    /// How long each serving certificate the operator issues (webhook and
    /// control channel) is valid; it is renewed at two thirds of that,
    /// without a restart. At least 10s.
    #[arg(long, env = "BARELB_SERVING_CERT_LIFETIME", default_value = "2160h", value_parser = parse_cert_lifetime)]
    serving_cert_lifetime: Duration,
    /// Serve the speakers' control channel (barelb.control.v1).
    #[arg(long, env = "BARELB_CONTROL", default_value_t = true, action = clap::ArgAction::Set)]
    control: bool,
    /// Where the control channel listens: HOST:PORT, or unix:PATH.
    #[arg(long, env = "BARELB_CONTROL_ADDR", default_value = "0.0.0.0:9444")]
    control_addr: control::server::Listen,
    /// HTTP/2 keepalive ping interval towards speakers (ms).
    #[arg(long, default_value_t = 250)]
    control_keepalive_ms: u64,
    /// A speaker that does not answer a ping within this (ms) is gone.
    #[arg(long, default_value_t = 500)]
    control_keepalive_timeout_ms: u64,
    /// After a leader change, at most this long (ms) each address stays with
    /// the speaker that says it holds it, and those no speaker claims wait,
    /// while speakers reconnect; it ends early once every Ready node's
    /// speaker is back. A failover meanwhile happens at once.
    #[arg(long, default_value_t = 5000)]
    control_settle_ms: u64,
    /// The settle period goes on past `--control-settle-ms`, up to this
    /// (ms), for addresses whose last announcing node (the Service's
    /// Announced condition) is Ready but whose speaker is not back: it still
    /// answers for them, so they are not moved away and back. Longer than
    /// a dead node takes to turn NotReady (40 s), so the limit only matters
    /// for a speaker gone on a node that is up.
    #[arg(long, default_value_t = 45000)]
    control_settle_max_ms: u64,
    /// Secret (CA key) and ConfigMap (CA certificate, for speakers) of the control channel.
    #[arg(long, default_value = "barelb-control-ca")]
    control_ca: String,
    /// The Service speakers reach the operator by (certificate names).
    #[arg(long, default_value = "barelb-control")]
    control_service: String,
    /// More names for the control certificate (repeatable).
    #[arg(long = "control-cert-name")]
    control_cert_names: Vec<String>,
    /// NAMESPACE/NAME of the speakers' ServiceAccount ("" = any service account).
    #[arg(
        long,
        env = "BARELB_SPEAKER_SERVICE_ACCOUNT",
        default_value = "barelb-system/barelb-speaker"
    )]
    speaker_service_account: String,
}

fn main() -> std::process::ExitCode {
    barelb_runtime::exit("barelb-operator", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    barelb_runtime::traced(args.log_format, "barelb-operator", serve(args)).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // Before anything else, so a SIGTERM during start-up is an orderly stop.
    let shutdown = barelb_runtime::Shutdown::install()?;
    check_webhook_endpoint(&args)?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let client = kube::Client::try_default()
        .await
        .context("connect to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    ensure_namespace(&client, &args.namespace).await?;

    let metrics = Metrics::new();
    let metrics_task = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone()));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (leader_tx, leader_rx) = watch::channel(false);
    let lease = LeaseConfig {
        namespace: args.namespace.clone(),
        name: "barelb-operator".into(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline.min(args.lease_duration),
        retry_period: args.retry_period,
    };
    // When a Lease request last failed; the process start counts as one
    // (it may follow an outage): see control::heartbeats.
    let (lease_failed_tx, lease_failed_rx) = watch::channel(std::time::Instant::now());
    let elector = tokio::spawn(leader::run(
        client.clone(),
        lease,
        leader_tx,
        lease_failed_tx,
        shutdown_rx.clone(),
    ));
    let settings = Settings {
        namespace: args.namespace.clone(),
        class: ClassPolicy {
            class: args.load_balancer_class.clone(),
            handle_classless: args.handle_classless,
        },
        pool_selector: args.pool_selector.clone(),
        default_deny_pools: args.default_deny_pools,
        // Distinct managers let instances with different classes tell whose
        // status a Service carries.
        field_manager: if args.load_balancer_class == barelb_api::LOAD_BALANCER_CLASS {
            "barelb-operator".into()
        } else {
            format!("barelb-operator@{}", args.load_balancer_class)
        },
        identity: identity.clone(),
        write_concurrency: args.write_concurrency,
    };
    tracing::info!(%identity, namespace = %args.namespace, handle_classless = args.handle_classless, "barelb-operator starting");
    let view: SharedView = Arc::new(RwLock::new(Arc::new(View::empty(Arc::new(
        barelb_policies::Engine::default(),
    )))));
    let webhook_task = if args.webhook {
        let ws = webhook_settings(&args, &settings.field_manager)?;
        Some(tokio::spawn(webhook::run(
            client.clone(),
            ws,
            view.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )))
    } else {
        None
    };
    let hub = control::Hub::new(
        metrics.clone(),
        control::SettleTimes {
            period: Duration::from_millis(args.control_settle_ms),
            max: Duration::from_millis(args.control_settle_max_ms),
        },
    )
    .context("start the control hub's thread")?;
    let control_task = if args.control {
        let cs = control_settings(&args, &client).await?;
        let sa = match args.speaker_service_account.as_str() {
            "" => None,
            s => Some(
                s.split_once('/')
                    .map(|(n, a)| (n.to_string(), a.to_string()))
                    .with_context(|| {
                        format!("--speaker-service-account {s}: want NAMESPACE/NAME")
                    })?,
            ),
        };
        // Not essential: without heartbeats a settling leader waits for a
        // Ready node's speaker up to its limit. It ends on shutdown.
        tokio::spawn(control::heartbeats::follow(
            client.clone(),
            hub.clone(),
            leader_rx.clone(),
            lease_failed_rx,
            shutdown_rx.clone(),
        ));
        Some(tokio::spawn(control::server::run(
            cs,
            hub.clone(),
            control::auth::Authenticator::new(client.clone(), sa),
            leader_rx.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )))
    } else {
        None
    };
    let mut tasks: Vec<barelb_runtime::Essential> = vec![
        (METRICS_TASK, metrics_task),
        ("leader election", elector),
        (
            "allocation controller",
            tokio::spawn(controller::run(
                client,
                settings,
                metrics,
                leader_rx,
                shutdown_rx,
                view,
                args.control.then_some(hub),
            )),
        ),
    ];
    tasks.extend(webhook_task.map(|t| ("admission webhook", t)));
    tasks.extend(control_task.map(|t| ("control channel", t)));
    // Any essential task ending ends the process: a replica that kept
    // answering /readyz without its controller or elector would look
    // healthy and do nothing.
    let running = barelb_runtime::supervise(tasks, shutdown.wait()).await?;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    // The tasks drain side by side, 5 s at most in all. The metrics endpoint
    // serves until the process ends (probes and scrapes answer while the
    // others drain); waiting for it only delayed exit 5 s.
    let draining = running
        .into_iter()
        .filter(|(name, _)| *name != METRICS_TASK)
        .map(|(name, task)| async move {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Err(e))) => tracing::warn!(task = name, error = %e, "ended with an error"),
                Err(_) => tracing::warn!(task = name, "did not stop within 5 s"),
                _ => {}
            }
        });
    futures::future::join_all(draining).await;
    Ok(())
}

const METRICS_TASK: &str = "metrics endpoint";

/// The control channel's listener and certificate: a server certificate
/// from the operator's control CA (kept in a Secret), whose certificate is
/// published in a ConfigMap of the same name for speakers to trust.
async fn control_settings(
    args: &Args,
    client: &kube::Client,
) -> anyhow::Result<control::server::Settings> {
    let ca = webhook::certs::load_or_create_ca(client, &args.namespace, &args.control_ca).await?;
    let mut names = vec![
        format!("{}.{}.svc", args.control_service, args.namespace),
        format!(
            "{}.{}.svc.cluster.local",
            args.control_service, args.namespace
        ),
        args.control_service.clone(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    names.extend(args.control_cert_names.iter().cloned());
    publish_ca(client, &args.namespace, &args.control_ca, &ca.cert_pem).await?;
    Ok(control::server::Settings {
        listen: args.control_addr.clone(),
        keepalive: Duration::from_millis(args.control_keepalive_ms),
        keepalive_timeout: Duration::from_millis(args.control_keepalive_timeout_ms),
        certs: barelb_operator::serving_cert::Source::Ca {
            ca: Arc::new(ca),
            names,
            lifetime: args.serving_cert_lifetime,
        },
    })
}

/// Writes the CA certificate (public) to ConfigMap NAMESPACE/NAME, key `ca.crt`.
async fn publish_ca(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    pem: &str,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"ca.crt": pem},
    });
    api.patch(
        name,
        &kube::api::PatchParams::apply("barelb-operator").force(),
        &kube::api::Patch::Apply(&cm),
    )
    .await
    .with_context(|| format!("publish the control CA in ConfigMap {namespace}/{name}"))?;
    Ok(())
}

/// Outside a cluster the apiserver cannot reach the webhook through a
/// Service; registering one anyway would leave every claim it judges
/// waiting on an endpoint that does not exist.
fn check_webhook_endpoint(args: &Args) -> anyhow::Result<()> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if args.webhook && args.webhook_url.is_none() && !in_cluster {
        anyhow::bail!(
            "--webhook-url is required outside a cluster (the apiserver cannot reach Service {}/{} from here): pass --webhook-url https://HOST:PORT the apiserver can reach, or --webhook=false",
            args.namespace,
            args.webhook_service.split(':').next().unwrap_or_default()
        );
    }
    Ok(())
}

fn webhook_settings(args: &Args, field_manager: &str) -> anyhow::Result<webhook::Settings> {
    let (svc_name, svc_port) = match args.webhook_service.split_once(':') {
        Some((n, p)) => (
            n.to_string(),
            p.parse::<i32>()
                .with_context(|| format!("--webhook-service {}: port", args.webhook_service))?,
        ),
        None => (args.webhook_service.clone(), 443),
    };
    let endpoint = match &args.webhook_url {
        Some(url) => Endpoint::Url(url.clone()),
        None => Endpoint::Service {
            namespace: args.namespace.clone(),
            name: svc_name.clone(),
            port: svc_port,
        },
    };
    let mut cert_names = vec![
        format!("{svc_name}.{}.svc", args.namespace),
        format!("{svc_name}.{}.svc.cluster.local", args.namespace),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    if let Some(host) = args
        .webhook_url
        .as_deref()
        .and_then(|u| u.strip_prefix("https://"))
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty())
        && !cert_names.iter().any(|n| n == host)
    {
        cert_names.push(host.to_string());
    }
    Ok(webhook::Settings {
        addr: args.webhook_addr,
        drain: args.webhook_drain,
        namespace: args.namespace.clone(),
        ca_secret: args.webhook_ca_secret.clone(),
        cert_names,
        cert_lifetime: args.serving_cert_lifetime,
        cert_dir: args.webhook_cert_dir.clone(),
        config: Registration {
            name: args.webhook_config_name.clone(),
            endpoint,
            failure_policy: args.webhook_failure_policy.clone(),
            timeout_seconds: args.webhook_timeout,
            namespace_selector: args.webhook_namespace_selector.clone(),
            pool_selector: args.pool_selector.clone(),
            object_selector: args.webhook_object_selector.clone(),
            field_manager: field_manager.to_string(),
            class: ClassPolicy {
                class: args.load_balancer_class.clone(),
                handle_classless: args.handle_classless,
            },
            own_namespace: args.namespace.clone(),
            owner_cluster_role: args.webhook_owner_cluster_role.clone(),
        },
    })
}

/// A certificate lifetime: a duration of at least 10 s (renewal at two
/// thirds must leave time for the handshakes that follow).
fn parse_cert_lifetime(s: &str) -> Result<Duration, String> {
    let d = barelb_core::duration::parse(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(10) {
        return Err(format!("{s} is shorter than 10s"));
    }
    Ok(d)
}

/// The operator's namespace holds its Lease; create it when running against
/// a bare cluster such as the lab.
async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => tracing::info!(namespace = name, "created the operator namespace"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context(format!("create namespace {name}")),
        }
    }
    Ok(())
}
