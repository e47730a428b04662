//! The questions auditors ask, answered from derived state: accounts and
//! their balances as of a record or a date, forward and backward traces,
//! household statements, idle funds by age, anomalies, the compliance
//! report, and budget quota with its lineage.
//!
//! The queries read through [`LedgerView`] (derived state, the record count,
//! today's date and the requests records carry) and answer in domain types
//! ([`types`]); they know nothing of gRPC, storage engines or the server. The server
//! implements the view over its stores and only converts the answers.
//!
//! ```
//! use fundtrail_query::level_of;
//! assert_eq!(level_of("000000"), "central");
//! assert_eq!(level_of("620000"), "province");
//! assert_eq!(level_of("622900"), "prefecture");
//! assert_eq!(level_of("622926"), "county");
//! ```

pub mod accounts;
pub mod compliance;
pub mod entries;
pub mod progress;
pub mod quotas;
pub mod trace;
pub mod types;

use fundtrail_core::access::Answer;
use fundtrail_core::dates::Day;
use fundtrail_core::model::Request;
use fundtrail_core::state::Kv;
use fundtrail_core::Error;

pub use accounts::{account, accounts, AccountRequest, AccountsPage};
pub use compliance::{compliance, Breach, ComplianceRequest, ComplianceResponse};
pub use entries::{
    list_entries, reconcile, EntriesPage, EntriesRequest, Entry, Reconciled, Records,
};
pub use progress::{spending_progress, ProgressRequest, ProgressRow};
pub use quotas::{quota_lineage, quotas_held, QuotasPage, Standing};
pub use trace::{
    anomalies, balances_as_of, household_statement, idle_funds, level_of, trace_backward,
    trace_forward, AsOf,
};

/// Whom a report is for. A report computes nothing about an account its
/// reader may not read whole (so a page fills with what the reader sees,
/// and a county's report costs what its own accounts cost), and stops once
/// the client has gone.
pub trait Audience {
    /// Whether the reader may read `account_id` whole. Deciding this must
    /// not count as showing the account: the caller notes what it shows.
    fn may_read(&mut self, account_id: &str) -> Result<bool, Error>;

    /// What the reader gets of a record: whole, pseudonymised or left out.
    /// This counts as showing what the answer names.
    fn record(&mut self, entry: &Entry) -> Result<Answer, Error>;

    /// Refuses, exactly as a read of it would, unless the reader may read
    /// `account_id` whole: a filter naming an account asks about it.
    fn named(&mut self, account_id: &str) -> Result<(), Error>;

    /// An error once nobody waits for the answer any more.
    fn still_wanted(&self) -> Result<(), Error>;
}

/// A reader who may read everything and always waits: offline tools and
/// tests.
pub struct Everyone;

impl Audience for Everyone {
    fn may_read(&mut self, _account_id: &str) -> Result<bool, Error> {
        Ok(true)
    }

    fn record(&mut self, _entry: &Entry) -> Result<Answer, Error> {
        Ok(Answer::Full)
    }

    fn named(&mut self, _account_id: &str) -> Result<(), Error> {
        Ok(())
    }

    fn still_wanted(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// How many rows a report examines between checks that its client still
/// waits.
pub const ROWS_PER_WANTED_CHECK: usize = 64;

/// What the queries read.
pub trait LedgerView {
    /// Derived state as of the newest durable record.
    fn state(&self) -> &dyn Kv;

    /// Durable records: seqs below this exist.
    fn record_count(&self) -> u64;

    /// Today in China Standard Time, from the injected clock.
    fn today(&self) -> Day;

    /// The request record `seq` carries, decoded, and the id of the key
    /// that signed it.
    fn request(&self, seq: u64) -> Result<(Request, String), Error>;
}
