//! The log's signed checkpoints and the witnesses' cosignatures, kept in
//! the database next to the records they sign. A checkpoint row is
//! committed (and, with synchronous replication, on a standby) before the
//! server hands the checkpoint to anyone; since the database applies its
//! changes in order, a standby holding the checkpoint holds every record
//! it signs.

use fundtrail_tlog::Hash;

use crate::conn::Conn;
use crate::{db_error, to_hash, to_i64, to_u64, PgError};

/// The checkpoint tables of one database.
pub struct PgCheckpoints {
    conn: Conn,
}

impl PgCheckpoints {
    pub fn open(url: &str) -> Result<PgCheckpoints, PgError> {
        Ok(PgCheckpoints {
            conn: Conn::connect(url)?,
        })
    }

    /// Every stored note, oldest first, each with its cosignature lines
    /// (ordered by witness name) after the log's own signature.
    pub fn notes(&self) -> Result<Vec<String>, PgError> {
        self.notes_where("true")
    }

    /// The newest stored checkpoint's note, with its cosignature lines.
    pub fn newest_note(&self) -> Result<Option<String>, PgError> {
        let newest = "c.tree_size = (SELECT max(tree_size) FROM fundtrail_checkpoints)";
        Ok(self.notes_where(newest)?.pop())
    }

    /// The notes, with cosignature lines, of the checkpoints `filter` (an
    /// SQL condition on `c`, written here, never from input) selects.
    fn notes_where(&self, filter: &'static str) -> Result<Vec<String>, PgError> {
        let sql = format!(
            "SELECT c.note || coalesce(string_agg(s.line, '' ORDER BY s.witness), '')
             FROM fundtrail_checkpoints c
             LEFT JOIN fundtrail_cosignatures s USING (tree_size)
             WHERE {filter}
             GROUP BY c.tree_size, c.note ORDER BY c.tree_size"
        );
        let rows = self.conn.run(move |client| client.query(&sql, &[]))??;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The size and root of the newest stored checkpoint, as stored (its
    /// signature is checked by whoever opens its note).
    pub fn newest(&self) -> Result<Option<(u64, Hash)>, PgError> {
        let row = self.conn.run(|client| {
            client.query_opt(
                "SELECT tree_size, root_hash FROM fundtrail_checkpoints ORDER BY tree_size DESC LIMIT 1",
                &[],
            )
        })??;
        Ok(row.map(|row| (to_u64(row.get(0)), to_hash(row.get(1)))))
    }

    /// Stores a checkpoint the log signed. Storing the same one again is
    /// not an error; another checkpoint of the same size is (two logs, or
    /// a forked one, signed that size).
    pub fn insert_checkpoint(
        &self,
        tree_size: u64,
        root: &Hash,
        note: &str,
    ) -> std::io::Result<()> {
        let (size, root, note) = (to_i64(tree_size)?, root.to_vec(), note.to_string());
        self.conn.run_write(move |client| {
            let mut tx = client.transaction().map_err(db_error)?;
            tx.execute(
                "INSERT INTO fundtrail_checkpoints (tree_size, root_hash, note) VALUES ($1, $2, $3)
                 ON CONFLICT (tree_size) DO NOTHING",
                &[&size, &root, &note],
            )
            .map_err(db_error)?;
            let stored: String = tx
                .query_one(
                    "SELECT note FROM fundtrail_checkpoints WHERE tree_size = $1",
                    &[&size],
                )
                .map_err(db_error)?
                .get(0);
            if stored != note {
                return Err(std::io::Error::other(format!(
                    "the database holds another checkpoint of {size} records than the one this log signed"
                )));
            }
            tx.commit().map_err(db_error)
        })
    }

    /// Stores a witness's cosignature line for the checkpoint of
    /// `tree_size`; a witness's first line for a checkpoint stands.
    pub fn insert_cosignature(
        &self,
        tree_size: u64,
        witness: &str,
        line: &str,
    ) -> std::io::Result<()> {
        let (size, witness, line) = (to_i64(tree_size)?, witness.to_string(), line.to_string());
        self.conn.run_write(move |client| {
            client
                .execute(
                    "INSERT INTO fundtrail_cosignatures (tree_size, witness, line) VALUES ($1, $2, $3)
                     ON CONFLICT (tree_size, witness) DO NOTHING",
                    &[&size, &witness, &line],
                )
                .map_err(db_error)?;
            Ok(())
        })
    }
}
