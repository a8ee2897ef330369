//! Traces over OTLP, configured the standard way and off unless asked for.
//!
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! turns export on; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER(_ARG)` and the exporter's own `OTEL_EXPORTER_OTLP_*`
//! variables are read by the OpenTelemetry SDK as its specification says.
//! With none set no exporter, no thread and no OpenTelemetry layer exist:
//! spans are only what `tracing` makes for the logs.
//!
//! [`TraceContext`] carries one span's W3C Trace Context across a process
//! boundary (the control channel), so one Service change is one trace from
//! the operator's reconcile to the speaker's announcement.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The variables that turn export on (the signal-specific one wins).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
const PROTOCOL_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// The exporter, while traces are on; [`Telemetry::shutdown`] sends what
/// is still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (blocking: up to the exporter's
    /// timeout when the collector is gone). Call from a blocking context.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("traces: the exporter did not shut down cleanly: {e}");
        }
    }
}

fn first_set(vars: &[&str]) -> Option<(String, String)> {
    vars.iter().find_map(|v| {
        let value = std::env::var(v).ok().filter(|s| !s.trim().is_empty())?;
        Some(((*v).to_string(), value))
    })
}

/// The OTLP exporter's tracer provider, when the environment asks for one.
/// Must run inside a tokio runtime (the gRPC channel is tonic's).
pub(crate) fn provider(service: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some((var, endpoint)) = first_set(&ENDPOINT_VARS) else {
        return Ok(None);
    };
    if let Some((pvar, protocol)) = first_set(&PROTOCOL_VARS)
        && protocol != "grpc"
    {
        anyhow::bail!(
            "{pvar}={protocol}: barelb exports traces over OTLP/gRPC only; set it to grpc or unset it"
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| anyhow::anyhow!("{var}={endpoint}: cannot export traces there: {e}"))?;
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|s| !s.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|s| s.contains("service.name="));
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !named {
        resource = resource.with_service_name(service.to_string());
    }
    // The sampler comes from OTEL_TRACES_SAMPLER(_ARG) (the SDK's default
    // configuration), parent-based always-on when unset.
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The `tracing` layer that turns spans into OpenTelemetry spans.
pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
    service: &str,
) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service.to_string()))
        .with_tracked_inactivity(false)
}

pub(crate) fn telemetry(provider: Option<SdkTracerProvider>) -> Telemetry {
    Telemetry { provider }
}

/// One span's place in a trace, to continue it elsewhere: in another task,
/// or in another process through its W3C `traceparent`.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceContext(SpanContext);

impl TraceContext {
    /// `span`'s context, when it is being traced (never with traces off).
    pub fn of(span: &tracing::Span) -> Option<TraceContext> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(TraceContext(sc))
    }

    /// The context a peer sent as W3C Trace Context headers
    /// (`traceparent`, `tracestate`); None when absent or malformed.
    pub fn from_headers(headers: &HashMap<String, String>) -> Option<TraceContext> {
        if headers.is_empty() {
            return None;
        }
        let cx = TraceContextPropagator::new().extract(headers);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(TraceContext(sc))
    }

    /// As W3C Trace Context headers.
    pub fn headers(&self) -> HashMap<String, String> {
        let mut headers = HashMap::new();
        let cx = opentelemetry::Context::new().with_remote_span_context(self.0.clone());
        TraceContextPropagator::new().inject_context(&cx, &mut headers);
        headers
    }

    /// Makes `span` this context's child. Must be called before `span` is
    /// first entered; a span that is not traced is left alone.
    pub fn adopt(&self, span: &tracing::Span) {
        let cx = opentelemetry::Context::new().with_remote_span_context(self.0.clone());
        // Err only when traces are off or the span has started: nothing to do.
        let _ = span.set_parent(cx);
    }

    /// Links `span` to this context (a cause that is not its parent).
    pub fn link(&self, span: &tracing::Span) {
        span.add_link(self.0.clone());
    }
}

/// W3C headers of `span`, empty when it is not traced: what goes into a
/// message's trace-context map.
pub fn headers_of(span: &tracing::Span) -> HashMap<String, String> {
    TraceContext::of(span)
        .map(|t| t.headers())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_survives_the_round_trip_and_garbage_is_no_context() {
        let mut headers = HashMap::new();
        headers.insert(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        );
        let t = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(t.headers().get("traceparent"), headers.get("traceparent"));

        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "nonsense",
        ] {
            let h = HashMap::from([("traceparent".to_string(), bad.to_string())]);
            assert!(TraceContext::from_headers(&h).is_none(), "{bad:?}");
        }
        assert!(TraceContext::from_headers(&HashMap::new()).is_none());
    }

    #[test]
    fn without_an_exporter_no_span_has_a_context() {
        let span = tracing::info_span!("untraced");
        assert!(TraceContext::of(&span).is_none());
        assert!(headers_of(&span).is_empty());
    }
}
