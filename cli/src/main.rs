//! `kubectl barelb`: barelb's knowledge where platform engineers already
//! are. On PATH as `kubectl-barelb`, kubectl runs it as `kubectl barelb`.
//!
//! Exit codes: 0 success (plan: safe); 1 plan: the change would break
//! something (validate: problems found); 2 could not evaluate (bad input,
//! no cluster, a repo that does not parse); clap's own 2 for bad flags.

mod claims;
mod cluster;
mod leader;
mod objects;
mod plan;
mod repo;
mod report;
mod snapshot;
mod status;
mod why;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::plan::{OperatorFlags, Verdict};
use crate::report::Format;
use crate::snapshot::Snapshot;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl barelb",
    bin_name = "kubectl barelb",
    version,
    about = "See what a pool-repo change does to the cluster before it merges, and check a pool repo offline.",
    after_help = "Exit codes: 0 ok (plan: safe), 1 plan would break something or validate found problems, 2 could not evaluate (bad input, no cluster, a file that does not parse)."
)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterFlags,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "table",
        global = true
    )]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// kubectl's flags for reaching a cluster.
#[derive(Debug, Args)]
struct ClusterFlags {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace of the Service `why` explains (default: the context's, else "default").
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Namespace of the operator: `why` and `status` ask its leader (the
    /// barelb-operator Lease's holder) which speakers hold a stream and
    /// whether their links are up.
    #[arg(long, global = true, default_value = "barelb-system")]
    operator_namespace: String,
}

/// The operator's configuration, as its flags of the same names.
#[derive(Debug, Args)]
struct Operator {
    /// spec.loadBalancerClass the operator serves.
    #[arg(long, default_value = barelb_api::LOAD_BALANCER_CLASS)]
    load_balancer_class: String,
    /// Whether the operator also serves Services that name no class.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    handle_classless: bool,
    /// Whether pools no LoadBalancerPolicy selects are refused.
    #[arg(long)]
    default_deny_pools: bool,
}

impl Operator {
    fn flags(&self) -> OperatorFlags {
        OperatorFlags {
            class: self.load_balancer_class.clone(),
            handle_classless: self.handle_classless,
            default_deny_pools: self.default_deny_pools,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What a pool-repo change does to the cluster: objects added, removed
    /// and changed, what barelb's admission webhook would refuse, and every
    /// Service that would lose, change or newly get an address, or be
    /// denied by a policy (with the rule). Exit 0 safe, 1 would break
    /// something, 2 could not evaluate.
    Plan(PlanArgs),
    /// Checks a pool-repo directory offline: every object read, every pool
    /// against the others, every policy compiled, every peer checked — what
    /// the webhook checks that needs no cluster. Exit 0 clean, 1 refused, 2
    /// unreadable.
    Validate(ValidateArgs),
    /// Writes the cluster's Services and Namespaces as JSON, for `plan
    /// --snapshot` in a CI job that cannot reach the cluster.
    Snapshot(SnapshotArgs),
    /// Why a Service has the address it has (or none), and why that node
    /// announces it: the class served or not, the request as parsed, each
    /// candidate pool with the policies' verdict and the rule that decided,
    /// each node's eligibility, the last events. The operator's own rules.
    Why(WhyArgs),
    /// Pools (use per family), policies (Ready, pools selected), BGP peers
    /// (established/selected) and speakers (connected, link, addresses
    /// planned and held) on one screen. Streams and links come from the
    /// leading operator's metrics through the Pod proxy (get on pods/proxy
    /// in its namespace); without it they show as unknown.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct WhyArgs {
    /// The Service: svc/NAME, service/NAME or NAME.
    service: String,
    #[command(flatten)]
    operator: Operator,
}

#[derive(Debug, Args)]
struct StatusArgs {}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The pool repo (any directory inside it).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The revision the change starts from (default: the merge-base of HEAD
    /// and its upstream).
    #[arg(long)]
    base: Option<String>,
    /// The revision with the change.
    #[arg(long, default_value = "HEAD")]
    head: String,
    /// The directory Argo CD syncs, relative to the repo's root (e.g.
    /// environments/prod); kustomized when it has a kustomization.yaml.
    #[arg(long, default_value = "")]
    path: String,
    /// Evaluate against this file from `kubectl barelb snapshot` instead of
    /// the live cluster.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// kubectl, for `kubectl kustomize` (default: $KUBECTL, else kubectl on PATH).
    #[arg(long, env = "KUBECTL", default_value = "kubectl")]
    kubectl: PathBuf,
    #[command(flatten)]
    operator: Operator,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// A pool-repo directory (kustomized when it has a kustomization.yaml).
    #[arg(default_value = ".")]
    path: PathBuf,
    #[arg(long, env = "KUBECTL", default_value = "kubectl")]
    kubectl: PathBuf,
    #[command(flatten)]
    operator: Operator,
}

#[derive(Debug, Args)]
struct SnapshotArgs {
    /// Where to write it ("-": standard output).
    #[arg(long = "file", short = 'f', default_value = "-")]
    file: PathBuf,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // clap's error, on one line: what was wrong, and where to look.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let what = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("kubectl barelb: {what} (see kubectl barelb --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kubectl barelb: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let colour = std::io::stdout().is_terminal();
    match cli.command {
        Command::Plan(a) => {
            let report = run_plan(&a, &cli.cluster)?;
            print!("{}", report::render(&report, cli.output, colour)?);
            Ok(report.verdict as u8)
        }
        Command::Validate(a) => validate(&a),
        Command::Why(a) => {
            let name = a
                .service
                .strip_prefix("svc/")
                .or_else(|| a.service.strip_prefix("service/"))
                .or_else(|| a.service.strip_prefix("services/"))
                .unwrap_or(&a.service);
            if name.is_empty() || name.contains('/') {
                anyhow::bail!(
                    "{}: name a Service as svc/NAME (and -n NAMESPACE)",
                    a.service
                );
            }
            let (w, format) = runtime()?.block_on(async {
                let (client, default_ns) = client(&cli.cluster).await?;
                let ns = cli.cluster.namespace.clone().unwrap_or(default_ns);
                let c = cluster::Cluster::read(&client, &cli.cluster.operator_namespace).await?;
                let events = cluster::events(&client, &ns, name, 10).await;
                let key = barelb_core::request::ServiceKey {
                    namespace: ns,
                    name: name.to_string(),
                };
                anyhow::Ok((why::why(&c, &key, &a.operator.flags(), events)?, cli.output))
            })?;
            print!(
                "{}",
                structured(&w, format).unwrap_or_else(|| why::text(&w))
            );
            Ok(0)
        }
        Command::Status(_) => {
            let st = runtime()?.block_on(async {
                let (client, _) = client(&cli.cluster).await?;
                let c = cluster::Cluster::read(&client, &cli.cluster.operator_namespace).await?;
                anyhow::Ok(status::status(&c))
            })?;
            print!(
                "{}",
                structured(&st, cli.output).unwrap_or_else(|| status::text(&st))
            );
            Ok(0)
        }
        Command::Snapshot(a) => {
            let snap = runtime()?
                .block_on(async { Snapshot::fetch(&client(&cli.cluster).await?.0).await })?;
            let json = serde_json::to_string(&snap)? + "\n";
            if a.file.as_os_str() == "-" {
                print!("{json}");
            } else {
                std::fs::write(&a.file, json)
                    .map_err(|e| anyhow::anyhow!("write {}: {e}", a.file.display()))?;
            }
            Ok(0)
        }
    }
}

fn run_plan(a: &PlanArgs, cluster: &ClusterFlags) -> anyhow::Result<plan::Report> {
    let repo = git2::Repository::discover(&a.repo).map_err(|e| {
        anyhow::anyhow!(
            "--repo {}: not a git repository ({})",
            a.repo.display(),
            e.message()
        )
    })?;
    let base = match &a.base {
        Some(b) => b.clone(),
        None => repo::default_base(&repo)?.to_string(),
    };
    let path = a.path.trim_matches('/');
    let base_side = repo::load(&repo, &base, path, &a.kubectl)?;
    let head_side = repo::load(&repo, &a.head, path, &a.kubectl)?;
    let snapshot = match &a.snapshot {
        Some(f) => Snapshot::read(f)?,
        None => runtime()?.block_on(async { Snapshot::fetch(&client(cluster).await?.0).await })?,
    };
    Ok(plan::plan(
        (&base_side.commit, &base_side.objects),
        (&head_side.commit, &head_side.objects),
        &snapshot,
        &a.operator.flags(),
    ))
}

/// Exit 0 when every object of the directory would be admitted on its own
/// (against the others of the directory), 1 with each refusal's file and line.
fn validate(a: &ValidateArgs) -> anyhow::Result<u8> {
    let objects = repo::load_dir(&a.path, &a.kubectl)?;
    let index = plan::index_of(&objects, &Snapshot::default());
    let refused = plan::refusals(&plan::view_of(&index, &a.operator.flags()), &objects, None);
    for line in &refused {
        println!("{line}");
    }
    println!(
        "{} AddressPool(s), {} LoadBalancerPolicy(ies), {} BGPPeer(s): {}",
        objects.pools.len(),
        objects.policies.len(),
        objects.peers.len(),
        if refused.is_empty() {
            "valid".to_string()
        } else {
            format!("{} refused", refused.len())
        }
    );
    Ok(if refused.is_empty() {
        0
    } else {
        Verdict::Breaks as u8
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// JSON or YAML of `v` when asked for; None for the human formats.
fn structured<T: serde::Serialize>(v: &T, format: Format) -> Option<String> {
    match format {
        Format::Json => serde_json::to_string_pretty(v).ok().map(|s| s + "\n"),
        Format::Yaml => serde_yaml::to_string(v).ok(),
        Format::Table | Format::Markdown => None,
    }
}

/// A client as kubectl would make it from the same flags, and the
/// context's namespace.
async fn client(flags: &ClusterFlags) -> anyhow::Result<(kube::Client, String)> {
    let options = kube::config::KubeConfigOptions {
        context: flags.context.clone(),
        ..Default::default()
    };
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if flags.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    };
    let ns = config.default_namespace.clone();
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("connect to the cluster: {e}"))?;
    Ok((client, ns))
}
