//! Routing of one parsed admin request to the [`RevocationAdmin`] backend.

use std::panic::{catch_unwind, AssertUnwindSafe};

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::{control, AdminError, Observe, RevocationAdmin};

/// Content type of JSON responses.
const JSON: &str = "application/json";
/// Content type of `/metrics` (Prometheus text exposition, OpenMetrics flavour).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The last path segment that selects the import route instead of a serial.
const IMPORT_SEGMENT: &str = "import";

/// A response to send: status, JSON body and (for `405`) the allowed methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// HTTP status code.
    pub(crate) status: u16,
    /// Serialised JSON body.
    pub(crate) body: Vec<u8>,
    /// Value of the `Allow` header, sent with `405`.
    pub(crate) allow: Option<&'static str>,
    /// Value of the `Content-Type` header.
    pub(crate) content_type: &'static str,
    /// Send `WWW-Authenticate: Bearer` (with `401`).
    pub(crate) authenticate: bool,
}

impl Response {
    /// A response with `value` serialised as its body.
    pub(crate) fn json(status: u16, value: &Value) -> Response {
        // Serialising a `Value` cannot fail (its map keys are always strings).
        let body = serde_json::to_vec(value)
            .unwrap_or_else(|_| br#"{"error":"response serialisation failed"}"#.to_vec());
        Response {
            status,
            body,
            allow: None,
            content_type: JSON,
            authenticate: false,
        }
    }

    /// `{"error": message}` with `status`.
    pub(crate) fn error(status: u16, message: &str) -> Response {
        Response::json(status, &json!({ "error": message }))
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
        Response {
            allow: Some(allow),
            ..Response::error(405, "method not allowed")
        }
    }
}

impl From<AdminError> for Response {
    fn from(error: AdminError) -> Response {
        let status = if (400..=599).contains(&error.status) {
            error.status
        } else {
            500
        };
        Response::error(status, &error.message)
    }
}

/// Answers one request. `target` is the request target as received (origin-form).
pub(crate) fn handle(
    backend: &dyn RevocationAdmin,
    observe: Option<&dyn Observe>,
    method: &str,
    target: &str,
    body: &[u8],
) -> Response {
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let Some(rest) = path.strip_prefix('/') else {
        return Response::error(400, "request target must be an absolute path");
    };
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(raw.len());
    for segment in &raw {
        match percent_decode_str(segment).decode_utf8() {
            Ok(decoded) => segments.push(decoded.into_owned()),
            Err(_) => return Response::error(400, "path segment is not valid UTF-8"),
        }
    }
    if segments.iter().any(String::is_empty) {
        return Response::error(404, "not found");
    }
    match segments.as_slice() {
        [healthz] if healthz == "healthz" => match method {
            "GET" => Response::json(200, &json!({ "status": "ok" })),
            _ => Response::method_not_allowed("GET"),
        },
        [readyz] if readyz == "readyz" => match (method, observe) {
            ("GET", Some(observe)) => match guarded(|| Ok(observe.readiness())) {
                Ok(Ok(())) => Response::json(200, &json!({ "status": "ready" })),
                Ok(Err(reason)) => Response::json(503, &json!({ "status": reason })),
                Err(error) => error,
            },
            ("GET", None) => Response::json(503, &json!({ "status": "starting" })),
            _ => Response::method_not_allowed("GET"),
        },
        [metrics] if metrics == "metrics" => match (method, observe) {
            ("GET", Some(observe)) => match guarded(|| Ok(observe.metrics())) {
                Ok(text) => Response {
                    status: 200,
                    body: text.into_bytes(),
                    allow: None,
                    content_type: OPENMETRICS,
                    authenticate: false,
                },
                Err(error) => error,
            },
            ("GET", None) => Response::error(503, "metrics are not available yet"),
            _ => Response::method_not_allowed("GET"),
        },
        [route] if control::is_route(route) => {
            respond(|| Ok(control::handle(backend, method, route)))
        }
        [revocations, store, last] if revocations == "revocations" => {
            // The literal (undecoded) segment `import` selects the import route for POST;
            // other methods treat it as a serial like any other.
            let is_import = raw.get(2) == Some(&IMPORT_SEGMENT);
            match method {
                "POST" if is_import => respond(|| import(backend, store, body)),
                "PUT" => respond(|| put(backend, store, last, body)),
                "DELETE" => respond(|| delete(backend, store, last)),
                "GET" => respond(|| get(backend, store, last)),
                _ if is_import => Response::method_not_allowed("POST, GET, PUT, DELETE"),
                _ => Response::method_not_allowed("GET, PUT, DELETE"),
            }
        }
        _ => Response::error(404, "not found"),
    }
}

/// Runs a backend call, answering `500` if it panics instead of dropping the connection.
fn guarded<T>(call: impl FnOnce() -> Result<T, AdminError>) -> Result<T, Response> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => {
            tracing::error!("admin: backend panicked");
            Err(Response::error(500, "internal error"))
        }
    }
}

/// [`guarded`] for calls that make a response.
fn respond(call: impl FnOnce() -> Result<Response, AdminError>) -> Response {
    guarded(call).unwrap_or_else(|response| response)
}

fn put(
    backend: &dyn RevocationAdmin,
    store: &str,
    serial: &str,
    body: &[u8],
) -> Result<Response, AdminError> {
    let value = std::str::from_utf8(body)
        .map_err(|_| AdminError::bad_request("value must be valid UTF-8"))?;
    backend.put(store, serial, value)?;
    Ok(Response::json(
        200,
        &json!({ "store": store, "key": serial, "value": value }),
    ))
}

fn delete(
    backend: &dyn RevocationAdmin,
    store: &str,
    serial: &str,
) -> Result<Response, AdminError> {
    Ok(if backend.delete(store, serial)? {
        Response::json(200, &json!({ "deleted": true }))
    } else {
        Response::error(404, "not found")
    })
}

fn get(backend: &dyn RevocationAdmin, store: &str, serial: &str) -> Result<Response, AdminError> {
    Ok(match backend.get(store, serial)? {
        Some(value) => Response::json(200, &json!({ "key": serial, "value": value })),
        None => Response::error(404, "not found"),
    })
}

fn import(backend: &dyn RevocationAdmin, store: &str, body: &[u8]) -> Result<Response, AdminError> {
    let imported = backend.import(store, body)?;
    Ok(Response::json(200, &json!({ "imported": imported })))
}
