//! The tracing subscriber: human-readable or JSON lines, filtered by `RUST_LOG`;
//! with the `otlp` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are
//! also exported to an OpenTelemetry collector over OTLP/HTTP.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Keeps the exporter alive; dropping it sends the spans still buffered.
#[must_use = "spans still buffered are lost when this is dropped"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("traces not all exported: {e}");
            }
        }
    }
}

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is
/// unset. A second call (tests) keeps the first subscriber.
pub fn init(default_filter: &str, json: bool) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = std::io::stdout().is_terminal();
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().with_ansi(ansi).boxed()
    };
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut layers = vec![fmt];
    #[cfg(feature = "otlp")]
    let provider = otlp::provider();
    #[cfg(feature = "otlp")]
    if let Some(provider) = &provider {
        layers.push(otlp::layer(provider));
    }
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    Telemetry {
        #[cfg(feature = "otlp")]
        provider,
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing_subscriber::{Layer, Registry};

    /// The standard variables name the collector: `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (spans go to `<endpoint>/v1/traces`) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub(super) fn provider() -> Option<SdkTracerProvider> {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|_| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
            })
            .ok()?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .build();
        match exporter {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("sagaplane").build())
                    .build(),
            ),
            Err(e) => {
                eprintln!("OTLP export to {endpoint} not set up: {e}");
                None
            }
        }
    }

    pub(super) fn layer(provider: &SdkTracerProvider) -> Box<dyn Layer<Registry> + Send + Sync> {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("sagaplane"))
            .boxed()
    }
}
