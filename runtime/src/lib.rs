//! What every barelb binary needs around its own work, written once:
//! logging set-up, the wait for SIGTERM, the `/metrics` endpoint, and the
//! rule that a process whose essential task ended must end too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

pub mod otel;
pub use otel::{Telemetry, TraceContext};

/// How logs are written: `text` for people, `json` (one object per line,
/// an event's fields under `fields`, its spans under `spans`) for log
/// pipelines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format: use text or json")),
        }
    }
}

/// Logs to stdout in `format`, filtered by `RUST_LOG` (default
/// [`DEFAULT_LOG`]); text is coloured only on a terminal. Spans of barelb's
/// own crates also go out as traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set ([`otel`]), named `service` unless `OTEL_SERVICE_NAME` says
/// otherwise. Must run inside a tokio runtime; keep the returned
/// [`Telemetry`] and shut it down on exit so the last spans are sent.
pub fn init_tracing(format: LogFormat, service: &str) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_LOG.into());
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    let provider = otel::provider(service)?;
    // Only barelb's own spans become traces (not every HTTP request of the
    // libraries under it), whatever RUST_LOG keeps in the logs.
    let traces = provider.as_ref().map(|p| {
        otel::layer(p, service).with_filter(
            tracing_subscriber::filter::Targets::new().with_target("barelb", tracing::Level::INFO),
        )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging was already set up: {e}"))?;
    Ok(otel::telemetry(provider))
}

/// Sets up logs and traces ([`init_tracing`]) for `service`, runs `body`,
/// then sends the spans still buffered before the process exits.
pub async fn traced<F>(format: LogFormat, service: &str, body: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let telemetry = init_tracing(format, service)?;
    let result = body.await;
    if telemetry.exporting() {
        // Blocks until the exporter's thread has sent its last batch.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    }
    result
}

/// `info`, without kube-client's line per failed request: the operator
/// reports failed writes itself, summarised (one apiserver outage would
/// otherwise be an ERROR line per object per retry).
pub const DEFAULT_LOG: &str = "info,kube_client::client::builder=off";

/// SIGTERM and SIGINT, caught from the moment [`Shutdown::install`] runs.
/// Install it first thing: tokio installs a signal's handler only when asked,
/// and a SIGTERM before that (a Pod deleted while it starts, a test that stops
/// a speaker as soon as its session is up) takes the default action — exit at
/// once, with no Cease to the routers and no goodbye to the operator.
#[derive(Debug)]
pub struct Shutdown {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Must run inside a tokio runtime.
    pub fn install() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT since [`Shutdown::install`].
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// A binary's exit: success, or one line on stderr — `BINARY: error: cause`
/// — for a user's mistake, with no backtrace dump even under
/// RUST_BACKTRACE.
pub fn exit(binary: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What the metrics endpoint serves: a registry, and whether `/readyz` is OK.
pub trait Exposition: Send + Sync + 'static {
    fn registry(&self) -> &Registry;
    /// Default: ready whenever the process answers.
    fn ready(&self) -> bool {
        true
    }
}

/// The OpenMetrics text of every series in `registry`.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

async fn metrics<M: Exposition>(State(m): State<Arc<M>>) -> impl IntoResponse {
    match encode(m.registry()) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz<M: Exposition>(State(m): State<Arc<M>>) -> StatusCode {
    if m.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve_metrics<M: Exposition>(addr: SocketAddr, m: Arc<M>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics::<M>))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<M>))
        .with_state(m);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    axum::serve(listener, app).await?;
    Ok(())
}

/// A random number from an OS-seeded source (std's `RandomState` keys),
/// for jitter: a clock or the PID would be near-constant across speakers
/// started together (PID 1 in every container).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

/// `d` stretched by a random factor in [1, 1 + fraction).
pub fn jittered(d: std::time::Duration, fraction: f64) -> std::time::Duration {
    // 53 random bits: an exact f64 in [0, 1).
    let unit = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d + d.mul_f64(fraction.max(0.0) * unit)
}

/// A task the process cannot do without, by name.
pub type Essential = (&'static str, JoinHandle<anyhow::Result<()>>);

/// Waits for `stop` (normally [`Shutdown::wait`]) or for the first
/// essential task to end, whichever comes first. An essential task that
/// ends before `stop` is an error naming it, even when it returned Ok: a
/// process that kept serving without it would look healthy and do
/// nothing. On `stop`, returns the tasks, still running, for an orderly
/// shutdown.
pub async fn supervise(
    tasks: Vec<Essential>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Vec<Essential>> {
    if tasks.is_empty() {
        stop.await;
        return Ok(tasks);
    }
    let (names, handles): (Vec<&'static str>, Vec<_>) = tasks.into_iter().unzip();
    let mut first = futures::future::select_all(handles);
    tokio::select! {
        _ = stop => {}
        (result, index, _rest) = &mut first => {
            let name = names.get(index).copied().unwrap_or("a task");
            return Err(match result {
                Ok(Ok(())) => anyhow::anyhow!("{name} stopped"),
                Ok(Err(e)) => e.context(format!("{name} failed")),
                Err(e) => anyhow::anyhow!("{name} ended abnormally: {e}"),
            });
        }
    }
    Ok(names.into_iter().zip(first.into_inner()).collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn log_formats_parse_and_a_wrong_one_says_which_exist() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!(
            "yaml".parse::<LogFormat>(),
            Err("\"yaml\" is not a log format: use text or json".to_string())
        );
    }

    #[tokio::test]
    async fn an_essential_task_that_ends_ends_the_process() {
        let forever = || tokio::spawn(async { std::future::pending::<anyhow::Result<()>>().await });
        let tasks: Vec<Essential> = vec![
            ("metrics endpoint", forever()),
            ("allocation controller", tokio::spawn(async { Ok(()) })),
        ];
        let err = supervise(tasks, std::future::pending()).await.unwrap_err();
        assert_eq!(err.to_string(), "allocation controller stopped");

        let tasks: Vec<Essential> = vec![
            ("metrics endpoint", forever()),
            (
                "leader election",
                tokio::spawn(async { anyhow::bail!("lease gone") }),
            ),
        ];
        let err = supervise(tasks, std::future::pending()).await.unwrap_err();
        assert_eq!(format!("{err:#}"), "leader election failed: lease gone");
    }

    #[test]
    fn jitter_is_spread_out() {
        let draws: std::collections::BTreeSet<u64> =
            (0..200).map(|_| random_u64() % 1000).collect();
        assert!(draws.len() > 150, "{} distinct of 200", draws.len());
        let base = Duration::from_secs(1);
        let spread: std::collections::BTreeSet<u128> = (0..100)
            .map(|_| jittered(base, 0.1))
            .inspect(|d| assert!(*d >= base && *d < base.mul_f64(1.1), "{d:?}"))
            .map(|d| d.as_micros())
            .collect();
        assert!(spread.len() > 90, "{}", spread.len());
    }

    #[tokio::test]
    async fn stop_returns_the_running_tasks() {
        let tasks: Vec<Essential> = vec![(
            "metrics endpoint",
            tokio::spawn(async { std::future::pending::<anyhow::Result<()>>().await }),
        )];
        let rest = supervise(tasks, tokio::time::sleep(Duration::from_millis(10)))
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert!(!rest[0].1.is_finished());
    }
}
