//! The admin API's control routes: `POST /reload` and `GET /status`.
//!
//! They are served by the backend's [`ControlAdmin`] side, when it has one
//! ([`super::RevocationAdmin::control`]); otherwise they answer `404`.

use serde_json::Value;

use super::routes::Response;
use super::RevocationAdmin;

/// The reload and status operations the admin server exposes.
pub trait ControlAdmin: Send + Sync {
    /// Reloads the configuration now: `Ok` with the new generation and a summary, or `Err`
    /// with every validation error (the running configuration stays).
    fn reload(&self) -> Result<Value, Value>;
    /// The current generation, when and from what it was loaded, the last reload's result and
    /// every remote source's state.
    fn status(&self) -> Value;
}

/// Whether `segment` (a one-segment path) is a control route.
pub(crate) fn is_route(segment: &str) -> bool {
    matches!(segment, "reload" | "status")
}

/// Answers `method /route` for a control route.
pub(crate) fn handle(backend: &dyn RevocationAdmin, method: &str, route: &str) -> Response {
    let Some(control) = backend.control() else {
        return Response::error(404, "not found");
    };
    match (route, method) {
        ("reload", "POST") => match control.reload() {
            Ok(report) => Response::json(200, &report),
            Err(refused) => Response::json(400, &refused),
        },
        ("reload", _) => Response::method_not_allowed("POST"),
        ("status", "GET") => Response::json(200, &control.status()),
        (_, _) => Response::method_not_allowed("GET"),
    }
}
