//! Live metrics (`--metrics-listen`): while runs last, what their recorders see is also counted
//! in one registry per process and served as OpenMetrics text on one listener, so Prometheus
//! can watch a failover as it happens.
//!
//! The flow: `families` (the metric families, their names and labels, and the process's own
//! collector) ← `target` (one target's view: label handles resolved once, a record updating
//! them without allocating; `outage` tracks the current outage) ← `serve` (the HTTP listener).
//!
//! The API a caller uses, once per process however many targets it measures:
//! ```no_run
//! # async fn doc(plan: failprobe::scenario::Plan) -> anyhow::Result<()> {
//! let metrics = failprobe::live::Metrics::new();
//! let listener = failprobe::live::serve("127.0.0.1:0".parse()?, &metrics).await?;
//! let result = failprobe::run::run_with_metrics(plan.clone(), Some(metrics.for_target(&plan.name))).await;
//! listener.stop().await;
//! # Ok(()) }
//! ```
//! Label values come from the plan only (target names, client profiles, streams, results,
//! error classes, phases): never a key, a sequence number or anything a server sent.

mod families;
mod outage;
mod serve;
mod target;

pub use families::Metrics;
pub use serve::{check_address, serve, Listener};
pub use target::TargetMetrics;
