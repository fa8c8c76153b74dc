//! Object-store clients (S3 or S3-compatible, plain HTTP(S)) and one bounded, conditional GET.
//!
//! Clients are `object_store` stores over reqwest + rustls (ring provider), built per bucket or
//! host and per `[sources]` settings, with a time limit on every request, at most one retry,
//! and an outer deadline around the whole call. Object bodies are read in chunks and refused
//! beyond `max_object_bytes`. Errors are plain strings: `object_store` errors name the URL and
//! the HTTP status, never a credential.

use std::sync::{Arc, Once};
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, GetOptions, ObjectStore, RetryConfig};
use portcullis_config::{ObjectScheme, ObjectUrl, SourceSettings};

/// Region used for S3 when neither `s3_region` nor the environment names one.
const DEFAULT_REGION: &str = "us-east-1";

/// What a conditional GET found.
#[derive(Debug)]
pub(crate) enum Got {
    /// The object still has the ETag that was sent.
    NotModified,
    /// The object's bytes and ETag.
    Object {
        /// The body, at most `max_object_bytes`.
        bytes: Arc<[u8]>,
        /// Its ETag, if the store sent one.
        etag: Option<String>,
    },
}

/// Identifies the client an object URL needs under some settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    scheme: ObjectScheme,
    authority: String,
    endpoint: Option<String>,
    region: Option<String>,
    allow_http: bool,
    timeout: Duration,
}

impl ClientKey {
    /// The key of `url` under `settings`.
    pub(crate) fn of(settings: &SourceSettings, url: &ObjectUrl) -> Self {
        let s3 = url.scheme() == ObjectScheme::S3;
        Self {
            scheme: url.scheme(),
            authority: url.authority().to_owned(),
            endpoint: s3.then(|| settings.s3_endpoint.clone()).flatten(),
            region: s3.then(|| settings.s3_region.clone()).flatten(),
            allow_http: s3 && settings.s3_allow_http,
            timeout: settings.timeout,
        }
    }
}

/// Builds the store for `url` under `settings`: S3 with the standard AWS credential chain
/// (environment, web identity, ECS, instance metadata) or plain HTTP(S).
pub(crate) fn build(
    settings: &SourceSettings,
    url: &ObjectUrl,
) -> Result<Arc<dyn ObjectStore>, String> {
    install_crypto_provider();
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 1,
        retry_timeout: settings.timeout,
    };
    let options = |allow_http: bool| {
        ClientOptions::new()
            .with_timeout(settings.timeout)
            .with_connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .with_allow_http(allow_http)
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        ObjectScheme::S3 => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(url.authority())
                .with_allow_http(settings.s3_allow_http)
                .with_retry(retry)
                .with_client_options(options(settings.s3_allow_http));
            if let Some(region) = &settings.s3_region {
                builder = builder.with_region(region);
            } else if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region(DEFAULT_REGION);
            }
            if let Some(endpoint) = &settings.s3_endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            Arc::new(builder.build().map_err(|e| e.to_string())?)
        }
        scheme @ (ObjectScheme::Http | ObjectScheme::Https) => {
            let base = match scheme {
                ObjectScheme::Http => format!("http://{}", url.authority()),
                _ => format!("https://{}", url.authority()),
            };
            Arc::new(
                HttpBuilder::new()
                    .with_url(base)
                    .with_retry(retry)
                    .with_client_options(options(scheme == ObjectScheme::Http))
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    Ok(store)
}

/// reqwest runs rustls without a built-in provider (no second C crypto library next to
/// BoringSSL): install ring as the process default once.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// GETs the object `url` names from `store`: `NotModified` when it still has `if_none_match`,
/// else its bytes (refused beyond `max_bytes`). Bounded by `deadline` as a whole.
pub(crate) async fn get(
    store: Arc<dyn ObjectStore>,
    url: &ObjectUrl,
    if_none_match: Option<String>,
    max_bytes: u64,
    deadline: Duration,
) -> Result<Got, String> {
    match tokio::time::timeout(
        deadline,
        get_unbounded(store, url, if_none_match, max_bytes),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

async fn get_unbounded(
    store: Arc<dyn ObjectStore>,
    url: &ObjectUrl,
    if_none_match: Option<String>,
    max_bytes: u64,
) -> Result<Got, String> {
    let options = GetOptions {
        if_none_match,
        ..GetOptions::default()
    };
    let result = match store.get_opts(&ObjectPath::from(url.key()), options).await {
        Ok(result) => result,
        Err(object_store::Error::NotModified { .. }) => return Ok(Got::NotModified),
        Err(object_store::Error::NotFound { .. }) => return Err("no such object".to_owned()),
        Err(e) => return Err(e.to_string()),
    };
    let too_large = |size: u64| {
        format!("the object is {size} bytes, more than sources.max_object_bytes ({max_bytes})")
    };
    if result.meta.size > max_bytes {
        return Err(too_large(result.meta.size));
    }
    let etag = result.meta.e_tag.clone();
    let capacity = usize::try_from(result.meta.size).unwrap_or(0);
    let mut body = Vec::with_capacity(capacity);
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Got::Object {
        bytes: body.into(),
        etag,
    })
}
