//! The HorizontalPodAutoscaler controller's algorithm, as Kubernetes 1.36 runs it
//! (`pkg/controller/podautoscaler/horizontal.go` and `replica_calculator.go`), written from its
//! documented behaviour: pure functions and state, no I/O.
//!
//! - [`replicas`]: what one metric proposes (tolerance, `Value`/`AverageValue`/`Utilization`,
//!   missing pods);
//! - [`behavior`]: stabilization windows, `Pods`/`Percent` policies over `periodSeconds`,
//!   `selectPolicy`, and the legacy limits of an HPA without `behavior`;
//! - [`controller`]: one sync (bounds first, the highest of several metrics, invalid metrics,
//!   normalization, scale events);
//! - [`spec`]: an `autoscaling/v2` manifest read with the API's defaults;
//! - [`what_if`]: `--what-if 'path=value'` edits of a manifest;
//! - [`replay`]: a metric history replayed sync by sync (`simulate`);
//! - [`explain`]: one sync described step by step (`explain --hpa`).

pub mod behavior;
pub mod controller;
pub mod explain;
pub mod quantity;
pub mod replay;
pub mod replicas;
pub mod spec;
pub mod what_if;

pub use controller::{Controller, ControllerSettings, Decision};
pub use replay::{Observed, ReplayInput, Step, replay};
pub use spec::{Hpa, Metric, Source, Target, parse_manifest};
