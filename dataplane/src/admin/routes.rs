//! Routing of one parsed admin request to the [`RevocationAdmin`] backend.

use std::panic::{catch_unwind, AssertUnwindSafe};

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::{control, AdminError, RevocationAdmin};

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
        [route] if control::is_route(route) => {
            guarded(|| Ok(control::handle(backend, method, route)))
        }
        [revocations, store, last] if revocations == "revocations" => {
            // The literal (undecoded) segment `import` selects the import route for POST;
            // other methods treat it as a serial like any other.
            let is_import = raw.get(2) == Some(&IMPORT_SEGMENT);
            match method {
                "POST" if is_import => guarded(|| import(backend, store, body)),
                "PUT" => guarded(|| put(backend, store, last, body)),
                "DELETE" => guarded(|| delete(backend, store, last)),
                "GET" => guarded(|| get(backend, store, last)),
                _ if is_import => Response::method_not_allowed("POST, GET, PUT, DELETE"),
                _ => Response::method_not_allowed("GET, PUT, DELETE"),
            }
        }
        _ => Response::error(404, "not found"),
    }
}

/// Runs a backend call, answering `500` if it panics instead of dropping the connection.
fn guarded(call: impl FnOnce() -> Result<Response, AdminError>) -> Response {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into(),
        Err(_) => {
            tracing::error!("admin: revocation backend panicked");
            Response::error(500, "internal error")
        }
    }
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
