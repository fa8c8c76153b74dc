//! Portcullis data plane.
