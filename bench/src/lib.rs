//! Benchmarks for the Portcullis data plane (see `benches/`), and the
//! fixtures they share.

pub mod fixture;
