//! The fundtrail domain: money, orgs, keys, accounts, sources and the rules
//! that decide whether a signed request may become a log record.
//!
//! Everything here is pure: no I/O, no async, no clocks. The sequencer hands
//! [`apply::apply`] a request, the key that signed it and a view of the
//! derived state; it gets back the record's effects and the state writes, or
//! a [`Rejection`] that says in a finance clerk's words what was wrong. A
//! rejection never writes anything.
//!
//! ```
//! use fundtrail_core::money::Fen;
//! let amount = Fen::parse_yuan("1234.56").unwrap();
//! assert_eq!(amount.0, 123_456);
//! assert_eq!(amount.to_string(), "¥1,234.56");
//! ```

pub mod access;
pub mod apply;
pub mod clock;
pub mod dates;
pub mod error;
pub mod keyfile;
pub mod limits;
pub mod model;
pub mod money;
pub mod reconcile;
pub mod rules;
pub mod signing;
pub mod state;
pub mod validate;

pub use error::{Code, Error, Fault, FaultKind, Rejection};
