//! Querying: the Prometheus client, object listing for `*` requests, and turning samples into
//! metric values.

pub mod objects;
pub mod prometheus;
pub mod quantity;
pub mod resource_metrics;
pub mod shared;
pub mod values;

pub use prometheus::{
    PrometheusClient, PrometheusError, PrometheusSettings, QueryResult, Sample, Verb,
};
