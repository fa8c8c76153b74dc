//! The admin API's backend: the process-wide revocation state.

use crate::admin::{AdminError, RevocationAdmin};
use crate::revocation::{RevocationError, RevocationState};

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
