//! The admin API's backends: the process-wide revocation state, the control plane
//! (revocations, reload and status), and the metrics and readiness of telemetry.

use std::sync::Arc;

use serde_json::Value;

use crate::admin::{AdminError, ControlAdmin, Observe, RevocationAdmin};
use crate::control::{ControlPlane, Trigger};
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

impl RevocationAdmin for ControlPlane {
    fn put(&self, store: &str, serial: &str, value: &str) -> Result<(), AdminError> {
        Ok(self.revocation().put(store, serial, value)?)
    }

    fn delete(&self, store: &str, serial: &str) -> Result<bool, AdminError> {
        Ok(self.revocation().delete(store, serial)?)
    }

    fn get(&self, store: &str, serial: &str) -> Result<Option<String>, AdminError> {
        Ok(self.revocation().get(store, serial)?)
    }

    fn import(&self, store: &str, json: &[u8]) -> Result<usize, AdminError> {
        Ok(self.revocation().import(store, json)?)
    }

    fn control(&self) -> Option<&dyn ControlAdmin> {
        Some(self)
    }
}

impl ControlAdmin for ControlPlane {
    fn reload(&self) -> Result<Value, Value> {
        ControlPlane::reload(self, Trigger::Admin)
            .map(|report| report.to_json())
            .map_err(|refused| refused.to_json())
    }

    fn status(&self) -> Value {
        ControlPlane::status(self)
    }
}
