//! The admin API's backends: the process-wide revocation state, and the metrics and readiness
//! of telemetry.

use std::sync::Arc;

use crate::admin::{AdminError, Observe, RevocationAdmin};
use crate::revocation::{RevocationError, RevocationState};
use crate::telemetry::Metrics;

/// `/metrics` and `/readyz` from telemetry's metrics.
#[derive(Debug)]
pub struct MetricsEndpoint(pub Arc<Metrics>);

impl Observe for MetricsEndpoint {
    fn metrics(&self) -> String {
        self.0.encode()
    }

    fn readiness(&self) -> Result<(), String> {
        self.0.readiness().map_err(str::to_owned)
    }
}

impl From<RevocationError> for AdminError {
    fn from(e: RevocationError) -> Self {
        AdminError::new(e.http_status(), e.to_string())
    }
}

impl RevocationAdmin for RevocationState {
    fn put(&self, store: &str, serial: &str, value: &str) -> Result<(), AdminError> {
        Ok(RevocationState::put(self, store, serial, value)?)
    }

    fn delete(&self, store: &str, serial: &str) -> Result<bool, AdminError> {
        Ok(RevocationState::delete(self, store, serial)?)
    }

    fn get(&self, store: &str, serial: &str) -> Result<Option<String>, AdminError> {
        Ok(RevocationState::get(self, store, serial)?)
    }

    fn import(&self, store: &str, json: &[u8]) -> Result<usize, AdminError> {
        Ok(RevocationState::import(self, store, json)?)
    }
}
