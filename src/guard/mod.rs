//! The guardrail layer: bias deltas, the probe catalog, audits with a control noise floor,
//! runtime checks, reasoned mode and reports. Built on [`crate::engine`]; nothing below knows
//! about it.
//!
//! - [`probes`]: the catalog file (categories × poles × wordings, controls) and its validation;
//! - [`delta`]: how far one context moves a score (Δ, |Δ|, Wasserstein-1, argmax change);
//! - [`mod@audit`]: a transcript × items × probes, noise floor, flags and verdict;
//! - [`mod@check`]: one context at run time, with the neutral score beside it;
//! - [`dataset`]: many transcripts, one compact line each, and the aggregate with intervals;
//! - [`reasoned`]: ratings read after a short generated reasoning;
//! - [`thresholds`]: when a category is flagged;
//! - [`report`], [`html`]: the versioned JSON report and its self-contained HTML page.

pub mod audit;
pub mod check;
pub mod compare;
pub mod dataset;
pub mod delta;
pub mod html;
pub mod probes;
pub mod reasoned;
pub mod report;
pub mod thresholds;

pub use audit::{audit, audit_with, AuditMode, AuditOptions, AuditRequest};
pub use check::{
    check, check_items, check_items_with, Calibration, CheckOptions, CheckResult, SavedFloors,
};
pub use delta::{adapter_delta, bias_deltas, wasserstein1, AdapterDelta, BiasDelta, DeltaBatch};
pub use html::render_html;
pub use probes::{PoleSide, Probe, ProbeCatalog, ProbeKind, Split, SplitSelection};
pub use reasoned::ReasoningOptions;
pub use report::{AuditReport, VerdictStatus, REPORT_SCHEMA_JSON, REPORT_SCHEMA_VERSION};
pub use thresholds::Thresholds;
