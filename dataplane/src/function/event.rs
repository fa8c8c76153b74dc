//! The test connection of `portcullis function test`: an event in the JSON shape of the
//! spec's event table, turned into the same [`FunctionInput`] a handshake builds.

use std::net::IpAddr;

use serde::Deserialize;

use super::FunctionInput;
use crate::telemetry::LeafFields;

/// An event as written in a test file (`connection` of the spec, without the methods).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestEvent {
    /// Absent: no client certificate.
    pub client_certificate: Option<TestCertificate>,
    /// Default `203.0.113.10`.
    #[serde(default = "default_ip")]
    pub client_ip: IpAddr,
    /// Default `example.com`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Default `test`.
    #[serde(default = "default_distribution")]
    pub distribution_id: String,
    /// Default `test-connection`.
    #[serde(default = "default_connection_id")]
    pub connection_id: String,
    /// Extension; default `TLSv1.3`.
    #[serde(default = "default_tls_version")]
    pub tls_version: String,
}

/// `clientCertificate`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestCertificate {
    /// `certificates`.
    pub certificates: TestCertificates,
}

/// `clientCertificate.certificates`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestCertificates {
    /// `leaf`.
    pub leaf: TestLeaf,
}

/// `clientCertificate.certificates.leaf`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestLeaf {
    /// `00:9e:2a:af`.
    pub serial_number: String,
    /// `C=US, O=Example, CN=client`.
    #[serde(default)]
    pub subject: String,
    /// Same format.
    #[serde(default)]
    pub issuer: String,
    /// `notBefore` and `notAfter`.
    #[serde(default)]
    pub validity: TestValidity,
    /// 64 hex digits.
    #[serde(default)]
    pub sha256_fingerprint: String,
    /// Extension: `DNS:a.example`, ...
    #[serde(default)]
    pub subject_alternative_names: Vec<String>,
}

/// `validity`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestValidity {
    /// ISO 8601.
    #[serde(default)]
    pub not_before: String,
    /// ISO 8601.
    #[serde(default)]
    pub not_after: String,
}

fn default_ip() -> IpAddr {
    IpAddr::from([203, 0, 113, 10])
}
fn default_endpoint() -> String {
    "example.com".to_owned()
}
fn default_distribution() -> String {
    "test".to_owned()
}
fn default_connection_id() -> String {
    "test-connection".to_owned()
}
fn default_tls_version() -> String {
    "TLSv1.3".to_owned()
}

impl TestEvent {
    /// The leaf's fields as a handshake would have parsed them.
    pub fn leaf(&self) -> Option<LeafFields> {
        let leaf = &self.client_certificate.as_ref()?.certificates.leaf;
        Some(LeafFields {
            serial: leaf.serial_number.as_str().into(),
            subject: leaf.subject.as_str().into(),
            issuer: leaf.issuer.as_str().into(),
            validity: format!(
                "NotBefore={};NotAfter={}",
                leaf.validity.not_before, leaf.validity.not_after
            )
            .into(),
            sha256: leaf.sha256_fingerprint.as_str().into(),
            subject_alternative_names: leaf
                .subject_alternative_names
                .iter()
                .map(|n| n.as_str().into())
                .collect(),
        })
    }

    /// The function's input, with `leaf` from [`Self::leaf`].
    pub fn input<'a>(&'a self, leaf: Option<&'a LeafFields>) -> FunctionInput<'a> {
        FunctionInput {
            leaf,
            client_ip: self.client_ip,
            endpoint: &self.endpoint,
            distribution_id: &self.distribution_id,
            connection_id: &self.connection_id,
            tls_version: Some(&self.tls_version),
        }
    }
}
