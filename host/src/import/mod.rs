//! Imports from files: customers ([`customers`], `herald import`) and
//! suppression lists ([`suppressions`], `herald suppressions --import`).
//! A bad row is reported by line and reason and skipped; the rest import.

pub mod addresses;
pub mod customers;
pub mod suppressions;

pub use customers::{import_csv, ImportReport};
