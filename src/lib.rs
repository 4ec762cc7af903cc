//! heliograph: a metrics agent whose InfluxDB v1-compatible write listener never loses an
//! acknowledged point.
//!
//! Map of the modules:
//! - [`metric`]: the data every stage passes on.
//! - [`line_protocol`]: the parser and encoder.
pub mod line_protocol;
pub mod metric;
