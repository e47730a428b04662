//! Bank settlement reconciliation (惠民惠农一卡通): what the bank says it
//! credited, matched against the payments (Disbursement records) a county
//! recorded. Pure: the caller reads the bank's file and the ledger.
//!
//! A bank line matches a payment to the same household (by its registry
//! reference) of the same amount whose value date is on or before the
//! bank's and at most [`BANK_VALUE_DAYS_MAX`] days before it. Lines are
//! taken in file order; each payment is matched at most once, the oldest
//! first.

use std::collections::{BTreeMap, HashMap};

use crate::dates::{parse_date, Day};
use crate::money::Fen;

/// How long after a payment's value date the bank may credit it.
pub const BANK_VALUE_DAYS_MAX: Day = 30;
/// Lines one bank file may hold, the header included.
pub const BANK_FILE_LINES_MAX: usize = 1_000_000;
/// Bytes one bank file may hold.
pub const BANK_FILE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Characters of a bank reference or a household reference.
pub const BANK_FIELD_CHARS_MAX: usize = 64;

/// What the bank did with one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BankStatus {
    Credited,
    Failed,
}

/// One line of the bank's result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankLine {
    /// 1-based, the header being line 1.
    pub line_no: u64,
    pub household_ref: String,
    pub amount: Fen,
    pub value_day: Day,
    pub bank_reference: String,
    pub status: BankStatus,
}

impl BankLine {
    /// A line from its fields, or what is wrong with them: none empty or
    /// longer than [`BANK_FIELD_CHARS_MAX`] characters, the amount above
    /// zero, the date `YYYY-MM-DD`.
    pub fn check(
        line_no: u64,
        household_ref: &str,
        amount: Fen,
        value_date: &str,
        bank_reference: &str,
        status: BankStatus,
    ) -> Result<BankLine, String> {
        let field = |value: &str, name: &str| -> Result<String, String> {
            let value = value.trim();
            if value.is_empty() {
                return Err(format!("{name} is empty"));
            }
            if value.chars().count() > BANK_FIELD_CHARS_MAX {
                return Err(format!(
                    "{name} is longer than {BANK_FIELD_CHARS_MAX} characters"
                ));
            }
            Ok(value.to_string())
        };
        if amount.0 == 0 {
            return Err("金额 (amount_yuan) is zero".into());
        }
        let date = field(value_date, "入账日期 (value_date)")?;
        let value_day = parse_date(&date)
            .ok_or_else(|| format!("入账日期 (value_date) {date:?} is not a date YYYY-MM-DD"))?;
        Ok(BankLine {
            line_no,
            household_ref: field(household_ref, "户编号 (household_ref)")?,
            amount,
            value_day,
            bank_reference: field(bank_reference, "银行流水号 (bank_reference)")?,
            status,
        })
    }
}

/// One payment the county recorded (a Disbursement not reversed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub seq: u64,
    pub household_ref: String,
    pub amount: Fen,
    pub value_day: Day,
    /// The bank sent it back (a BANK_FAILURE return was posted): a line
    /// saying 成功 never matches it, and no line need report it again.
    pub returned_by_bank: bool,
}

/// What reconciliation found, line by line and payment by payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Paid, and the bank credited it.
    Credited { line_no: u64, seq: u64 },
    /// Paid, but the bank's credit failed: the money did not arrive.
    Failed { line_no: u64, seq: u64 },
    /// The bank reports a payment to a household the county paid nothing
    /// (not yet matched) to.
    NoPayment { line_no: u64 },
    /// The household has an unmatched payment, but of another amount or
    /// not within the days before the bank's value date.
    Mismatch {
        line_no: u64,
        seq: u64,
        amount_differs: bool,
        date_differs: bool,
    },
    /// A bank reference seen on an earlier line.
    DuplicateReference { line_no: u64, first_line_no: u64 },
    /// A payment no line of the file reports.
    NoBankLine { seq: u64 },
}

/// Matches `lines` against `payments`; findings in line order, then the
/// payments no line reported, by seq.
pub fn reconcile(lines: &[BankLine], payments: &[Payment]) -> Vec<Finding> {
    let mut open: HashMap<&str, Vec<&Payment>> = HashMap::new();
    for payment in payments {
        open.entry(payment.household_ref.as_str())
            .or_default()
            .push(payment);
    }
    for list in open.values_mut() {
        list.sort_by_key(|p| (p.value_day, p.seq));
    }
    let mut references: HashMap<&str, u64> = HashMap::new();
    let mut findings = Vec::new();
    for line in lines {
        if let Some(&first_line_no) = references.get(line.bank_reference.as_str()) {
            findings.push(Finding::DuplicateReference {
                line_no: line.line_no,
                first_line_no,
            });
            continue;
        }
        references.insert(&line.bank_reference, line.line_no);
        let list = open.entry(line.household_ref.as_str()).or_default();
        let in_time = |p: &Payment| {
            p.value_day <= line.value_day && line.value_day - p.value_day <= BANK_VALUE_DAYS_MAX
        };
        let eligible = |p: &Payment| !(p.returned_by_bank && line.status == BankStatus::Credited);
        if let Some(at) = list
            .iter()
            .position(|p| eligible(p) && p.amount == line.amount && in_time(p))
        {
            let seq = list.remove(at).seq;
            findings.push(match line.status {
                BankStatus::Credited => Finding::Credited {
                    line_no: line.line_no,
                    seq,
                },
                BankStatus::Failed => Finding::Failed {
                    line_no: line.line_no,
                    seq,
                },
            });
        } else if let Some(at) = list.iter().position(|p| eligible(p)) {
            let payment = list.remove(at);
            findings.push(Finding::Mismatch {
                line_no: line.line_no,
                seq: payment.seq,
                amount_differs: payment.amount != line.amount,
                date_differs: !in_time(payment),
            });
        } else {
            findings.push(Finding::NoPayment {
                line_no: line.line_no,
            });
        }
    }
    let mut unreported: Vec<u64> = open
        .values()
        .flatten()
        .filter(|p| !p.returned_by_bank)
        .map(|p| p.seq)
        .collect();
    unreported.sort_unstable();
    findings.extend(
        unreported
            .into_iter()
            .map(|seq| Finding::NoBankLine { seq }),
    );
    findings
}

/// Where each field is in the file's lines, from its header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    household_ref: usize,
    amount: usize,
    value_date: usize,
    bank_reference: usize,
    status: usize,
}

/// The names a column may have in the header (Chinese, English).
const COLUMN_NAMES: [(&str, &str); 5] = [
    ("户编号", "household_ref"),
    ("金额", "amount_yuan"),
    ("入账日期", "value_date"),
    ("银行流水号", "bank_reference"),
    ("状态", "status"),
];

impl Columns {
    /// Finds the five columns by name; others are ignored.
    pub fn from_header(header: &[&str]) -> Result<Columns, String> {
        let find = |(chinese, english): (&str, &str)| {
            let found: Vec<usize> = header
                .iter()
                .enumerate()
                .filter(|(_, name)| {
                    let name = name.trim();
                    name == chinese || name == english
                })
                .map(|(i, _)| i)
                .collect();
            match found[..] {
                [at] => Ok(at),
                [] => Err(format!("the header has no column {chinese} ({english})")),
                _ => Err(format!(
                    "the header names column {chinese} ({english}) twice"
                )),
            }
        };
        Ok(Columns {
            household_ref: find(COLUMN_NAMES[0])?,
            amount: find(COLUMN_NAMES[1])?,
            value_date: find(COLUMN_NAMES[2])?,
            bank_reference: find(COLUMN_NAMES[3])?,
            status: find(COLUMN_NAMES[4])?,
        })
    }

    /// Reads line `line_no`'s fields, or says what is wrong with them.
    pub fn line(&self, line_no: u64, fields: &[&str]) -> Result<BankLine, String> {
        let field = |at: usize| fields.get(at).map(|f| f.trim()).unwrap_or("");
        let amount = match field(self.amount) {
            "" => return Err("金额 (amount_yuan) is empty".into()),
            text => Fen::parse_yuan(text).map_err(|e| format!("金额 (amount_yuan): {e}"))?,
        };
        let status = match field(self.status) {
            "成功" | "success" => BankStatus::Credited,
            "失败" | "failed" => BankStatus::Failed,
            other => {
                return Err(format!(
                    "状态 (status) {other:?} is not 成功/success or 失败/failed"
                ))
            }
        };
        BankLine::check(
            line_no,
            field(self.household_ref),
            amount,
            field(self.value_date),
            field(self.bank_reference),
            status,
        )
    }
}

/// Counts of each kind of finding, by name, for a summary.
pub fn summary(findings: &[Finding]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for finding in findings {
        *counts.entry(finding.kind()).or_default() += 1;
    }
    counts
}

impl Finding {
    /// The finding's name in reports: CREDITED, FAILED, NO_PAYMENT,
    /// MISMATCH, DUPLICATE_REFERENCE, NO_BANK_LINE.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Credited { .. } => "CREDITED",
            Finding::Failed { .. } => "FAILED",
            Finding::NoPayment { .. } => "NO_PAYMENT",
            Finding::Mismatch { .. } => "MISMATCH",
            Finding::DuplicateReference { .. } => "DUPLICATE_REFERENCE",
            Finding::NoBankLine { .. } => "NO_BANK_LINE",
        }
    }
}

#[cfg(test)]
// Amounts are written yuan_fen: 300_00 is ¥300.00.
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;

    fn line(
        line_no: u64,
        household: &str,
        fen: u64,
        day: Day,
        reference: &str,
        status: BankStatus,
    ) -> BankLine {
        BankLine {
            line_no,
            household_ref: household.into(),
            amount: Fen(fen),
            value_day: day,
            bank_reference: reference.into(),
            status,
        }
    }

    fn paid(seq: u64, household: &str, fen: u64, day: Day) -> Payment {
        Payment {
            seq,
            household_ref: household.into(),
            amount: Fen(fen),
            value_day: day,
            returned_by_bank: false,
        }
    }

    #[test]
    fn a_payment_the_bank_returned_matches_its_failure_only() {
        use BankStatus::*;
        let returned = Payment {
            returned_by_bank: true,
            ..paid(10, "H1", 300_00, 100)
        };
        let again = paid(11, "H1", 300_00, 105);
        let payments = [returned.clone(), again];
        // The repaid money is credited: the line matches the new payment.
        let credited = [line(2, "H1", 300_00, 106, "R2", Credited)];
        assert_eq!(
            reconcile(&credited, &payments),
            vec![Finding::Credited {
                line_no: 2,
                seq: 11
            }]
        );
        // The old failure file again: it matches the returned payment, and
        // the new one is not reported by it.
        let failed = [line(2, "H1", 300_00, 101, "R1", Failed)];
        assert_eq!(
            reconcile(&failed, &payments),
            vec![
                Finding::Failed {
                    line_no: 2,
                    seq: 10
                },
                Finding::NoBankLine { seq: 11 }
            ]
        );
        // A returned payment alone is neither credited nor unreported.
        assert_eq!(
            reconcile(&credited, &[returned]),
            vec![Finding::NoPayment { line_no: 2 }]
        );
    }

    #[test]
    fn each_kind_of_finding() {
        use BankStatus::*;
        let payments = [
            paid(10, "A", 300_00, 100),
            paid(11, "B", 300_00, 100),
            paid(12, "C", 300_00, 100),
            paid(13, "D", 300_00, 100),
            paid(14, "E", 300_00, 100),
            paid(15, "F", 300_00, 100),
        ];
        let lines = [
            line(2, "A", 300_00, 103, "R1", Credited),
            line(3, "B", 300_00, 100, "R2", Failed),
            line(4, "C", 299_00, 101, "R3", Credited),
            line(
                5,
                "D",
                300_00,
                100 + BANK_VALUE_DAYS_MAX + 1,
                "R4",
                Credited,
            ),
            line(6, "E", 300_00, 99, "R5", Credited),
            line(7, "G", 300_00, 100, "R6", Credited),
            line(8, "A", 300_00, 103, "R1", Credited),
        ];
        assert_eq!(
            reconcile(&lines, &payments),
            vec![
                Finding::Credited {
                    line_no: 2,
                    seq: 10
                },
                Finding::Failed {
                    line_no: 3,
                    seq: 11
                },
                Finding::Mismatch {
                    line_no: 4,
                    seq: 12,
                    amount_differs: true,
                    date_differs: false
                },
                Finding::Mismatch {
                    line_no: 5,
                    seq: 13,
                    amount_differs: false,
                    date_differs: true
                },
                Finding::Mismatch {
                    line_no: 6,
                    seq: 14,
                    amount_differs: false,
                    date_differs: true
                },
                Finding::NoPayment { line_no: 7 },
                Finding::DuplicateReference {
                    line_no: 8,
                    first_line_no: 2
                },
                Finding::NoBankLine { seq: 15 },
            ]
        );
    }

    #[test]
    fn each_payment_matches_once_oldest_first() {
        use BankStatus::*;
        let payments = [paid(20, "A", 300_00, 110), paid(21, "A", 300_00, 100)];
        let lines = [
            line(2, "A", 300_00, 115, "R1", Credited),
            line(3, "A", 300_00, 115, "R2", Credited),
            line(4, "A", 300_00, 115, "R3", Credited),
        ];
        assert_eq!(
            reconcile(&lines, &payments),
            vec![
                Finding::Credited {
                    line_no: 2,
                    seq: 21
                },
                Finding::Credited {
                    line_no: 3,
                    seq: 20
                },
                Finding::NoPayment { line_no: 4 },
            ]
        );
    }

    #[test]
    fn columns_by_name_in_any_order_and_each_bad_field() {
        let columns =
            Columns::from_header(&["状态", "备注", "银行流水号", "入账日期", "金额", "户编号"])
                .unwrap();
        let good = columns
            .line(2, &["成功", "x", "R1", "2025-09-21", "300.00", "JDLK-1"])
            .unwrap();
        assert_eq!(good.amount, Fen(300_00));
        assert_eq!(good.status, BankStatus::Credited);
        let english = Columns::from_header(&[
            "household_ref",
            "amount_yuan",
            "value_date",
            "bank_reference",
            "status",
        ])
        .unwrap();
        assert!(english
            .line(2, &["H", "1.5", "2025-01-01", "R", "failed"])
            .is_ok());
        for (fields, says) in [
            (["失败", "", "R1", "2025-09-21", "300.00", "H"], None),
            (
                ["成功", "", "", "2025-09-21", "300.00", "H"],
                Some("银行流水号"),
            ),
            (
                ["成功", "", "R", "2025-9-21", "300.00", "H"],
                Some("入账日期"),
            ),
            (
                ["成功", "", "R", "2025-09-21", "300.001", "H"],
                Some("two decimals"),
            ),
            (["成功", "", "R", "2025-09-21", "-3", "H"], Some("金额")),
            (["成功", "", "R", "2025-09-21", "0.00", "H"], Some("zero")),
            (["退回", "", "R", "2025-09-21", "3", "H"], Some("状态")),
            (["成功", "", "R", "2025-09-21", "3", ""], Some("户编号")),
        ] {
            match (columns.line(2, &fields), says) {
                (Ok(_), None) => {}
                (Err(e), Some(says)) => assert!(e.contains(says), "{e}"),
                (other, says) => panic!("{fields:?}: {other:?}, wanted {says:?}"),
            }
        }
        assert!(
            Columns::from_header(&["户编号", "金额", "入账日期", "状态"])
                .unwrap_err()
                .contains("银行流水号")
        );
        assert!(Columns::from_header(&[
            "户编号",
            "户编号",
            "金额",
            "入账日期",
            "银行流水号",
            "状态"
        ])
        .unwrap_err()
        .contains("twice"));
    }
}
