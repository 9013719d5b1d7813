//! Team policy bundles in the store (`bundles`, see migration 007): the archive last downloaded
//! and verified for each configured bundle, the outcome of the last attempt, and the lease that
//! makes one process per machine the one that polls the host.
//!
//! Only the lease holder writes archives; every wrapper reads them (a cheap digest compare first),
//! verifies them again with its own keys and activates them. Activations are journaled
//! (`bundle_activated` / `bundle_activation_failed`) by [`Store::record_bundle_activation`].

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use super::chain::Kind;
use super::store::{now_rfc3339, Owner};
use super::{Store, StoreError};

/// One bundle as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoredBundle {
    pub name: String,
    pub url: String,
    /// The verified archive (`None` until one was downloaded).
    #[serde(skip)]
    pub archive: Option<Vec<u8>>,
    pub etag: Option<String>,
    pub sha256: Option<String>,
    pub revision: Option<String>,
    pub signer: Option<String>,
    pub fetched_at: Option<String>,
    pub checked_at: Option<String>,
    pub last_error: Option<String>,
    /// The process polling the host, while its lease runs (`pid`).
    pub lease_pid: Option<i64>,
    /// When the lease ends (Unix seconds).
    pub lease_expires_at: Option<i64>,
}

/// An archive downloaded and verified, to be stored.
#[derive(Debug, Clone)]
pub struct Fetched<'a> {
    pub archive: &'a [u8],
    pub etag: Option<&'a str>,
    pub sha256: &'a str,
    pub revision: &'a str,
    pub signer: Option<&'a str>,
}

const COLUMNS: &str = "name, url, archive, etag, sha256, revision, signer, fetched_at, checked_at,
    last_error, lease_pid, lease_expires_at";

fn of_row(r: &Row) -> rusqlite::Result<StoredBundle> {
    Ok(StoredBundle {
        name: r.get(0)?,
        url: r.get(1)?,
        archive: r.get(2)?,
        etag: r.get(3)?,
        sha256: r.get(4)?,
        revision: r.get(5)?,
        signer: r.get(6)?,
        fetched_at: r.get(7)?,
        checked_at: r.get(8)?,
        last_error: r.get(9)?,
        lease_pid: r.get(10)?,
        lease_expires_at: r.get(11)?,
    })
}

/// The longest lease `behavry bundle fetch` takes for one download.
pub const MANUAL_LEASE_SECS: i64 = 300;

/// How a lease names its holder: the pid and the process's start time, so a reused pid is not
/// mistaken for the holder.
fn instance(owner: Owner) -> String {
    format!("{}:{}", owner.pid, owner.start)
}

fn owner_of(instance: &str) -> Option<Owner> {
    let (pid, start) = instance.split_once(':')?;
    Some(Owner {
        pid: pid.parse().ok()?,
        start: start.parse().ok()?,
    })
}

impl Store {
    /// The stored bundle `name`, archive included.
    pub fn bundle(&self, name: &str) -> Result<Option<StoredBundle>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM bundles WHERE name = ?1"),
                [name],
                of_row,
            )
            .optional()
            .map_err(self.sqlite())
    }

    /// Every stored bundle, by name, archive included.
    pub fn bundles(&self) -> Result<Vec<StoredBundle>, StoreError> {
        let sql = self.sqlite();
        let mut stmt = self
            .conn()
            .prepare(&format!("SELECT {COLUMNS} FROM bundles ORDER BY name"))
            .map_err(&sql)?;
        let rows = stmt.query_map([], of_row).map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// The digest of the archive stored for `name` from `url` (a cheap check before loading it).
    pub fn bundle_sha256(&self, name: &str, url: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT sha256 FROM bundles WHERE name = ?1 AND url = ?2",
                [name, url],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.sqlite())
    }

    /// Takes (or renews) the lease on polling `name` for `ttl_secs` from `now` (Unix seconds).
    /// Granted when nobody holds it, this process does, the holder's lease ran out, or the holder
    /// is no longer running. A row from another `url` is reset: its archive is not this bundle.
    /// A lease running further ahead than any holder takes one (`ttl_secs`, or a manual fetch's
    /// [`MANUAL_LEASE_SECS`]) was not written by a holder: the store is the user's file, and a
    /// lease far in the future, in the name of a process that stays up, would stop every poll.
    pub fn take_bundle_lease(
        &mut self,
        name: &str,
        url: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<bool, StoreError> {
        let sql = self.sqlite();
        let me = Owner::current();
        let tx = self.write_tx()?;
        let row: Option<(String, Option<String>, Option<i64>)> = tx
            .query_row(
                "SELECT url, lease_instance, lease_expires_at FROM bundles WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(&sql)?;
        let granted = match &row {
            None => true,
            Some((_, None, _)) => true,
            Some((_, Some(holder), expires)) => {
                *holder == instance(me)
                    || expires.is_none_or(|e| {
                        e <= now || e.saturating_sub(now) > ttl_secs.max(MANUAL_LEASE_SECS)
                    })
                    || owner_of(holder).is_none_or(|o| !o.is_alive())
            }
        };
        if !granted {
            return Ok(false);
        }
        match row {
            Some((stored_url, ..)) if stored_url == url => {
                tx.execute(
                    "UPDATE bundles SET lease_pid = ?2, lease_instance = ?3, lease_expires_at = ?4
                     WHERE name = ?1",
                    params![name, me.pid, instance(me), now + ttl_secs],
                )
                .map_err(&sql)?;
            }
            _ => {
                tx.execute(
                    "INSERT OR REPLACE INTO bundles (name, url, lease_pid, lease_instance, lease_expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, url, me.pid, instance(me), now + ttl_secs],
                )
                .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)?;
        Ok(true)
    }

    /// Takes the lease on `name` from whoever holds it, for `ttl_secs` from `now`: a fetch asked
    /// for by hand (`behavry bundle fetch`) does not wait for the holder's schedule. The holder
    /// finds it taken at its next poll and skips that poll (and, mid-download, stores nothing);
    /// it takes the lease back once this one is released or runs out. Returns the pid of the
    /// running process it was taken from, if any.
    pub fn take_over_bundle_lease(
        &mut self,
        name: &str,
        url: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<Option<i64>, StoreError> {
        let sql = self.sqlite();
        let me = Owner::current();
        let previous: Option<String> = self
            .conn()
            .query_row(
                "SELECT lease_instance FROM bundles WHERE name = ?1 AND url = ?2
                   AND lease_expires_at > ?3",
                params![name, url, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?
            .flatten();
        let from = previous
            .filter(|p| *p != instance(me))
            .and_then(|p| owner_of(&p))
            .filter(|o| o.is_alive())
            .map(|o| i64::from(o.pid));
        if self.take_bundle_lease(name, url, now, ttl_secs)? {
            return Ok(None);
        }
        let tx = self.write_tx()?;
        tx.execute(
            "UPDATE bundles SET lease_pid = ?2, lease_instance = ?3, lease_expires_at = ?4
             WHERE name = ?1",
            params![name, me.pid, instance(me), now + ttl_secs],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(from)
    }

    /// Gives the lease up (at exit), so another wrapper takes over at its next poll.
    pub fn release_bundle_lease(&mut self, name: &str) -> Result<(), StoreError> {
        let sql = self.sqlite();
        let me = instance(Owner::current());
        let tx = self.write_tx()?;
        tx.execute(
            "UPDATE bundles SET lease_pid = NULL, lease_instance = NULL, lease_expires_at = NULL
             WHERE name = ?1 AND lease_instance = ?2",
            params![name, me],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Stores a verified archive for `name` (downloaded from `url`), clearing the last error.
    /// Only while this process holds the lease, or nobody does: a holder whose lease was taken
    /// over mid-download (`behavry bundle fetch`) does not overwrite what the new holder stored.
    /// `false` when it was not stored for that reason.
    pub fn store_bundle(
        &mut self,
        name: &str,
        url: &str,
        fetched: &Fetched,
    ) -> Result<bool, StoreError> {
        let sql = self.sqlite();
        let now = now_rfc3339();
        let me = instance(Owner::current());
        let tx = self.write_tx()?;
        let changed = tx.execute(
            "INSERT INTO bundles (name, url, archive, etag, sha256, revision, signer, fetched_at,
                 checked_at, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, NULL)
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, archive = excluded.archive,
                 etag = excluded.etag, sha256 = excluded.sha256, revision = excluded.revision,
                 signer = excluded.signer, fetched_at = excluded.fetched_at,
                 checked_at = excluded.checked_at, last_error = NULL
             WHERE bundles.lease_instance IS NULL OR bundles.lease_instance = ?9",
            params![
                name,
                url,
                fetched.archive,
                fetched.etag,
                fetched.sha256,
                fetched.revision,
                fetched.signer,
                now,
                me
            ],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(changed > 0)
    }

    /// Notes a poll that found nothing new (a 304, or the same archive again).
    pub fn bundle_unchanged(&mut self, name: &str) -> Result<(), StoreError> {
        let sql = self.sqlite();
        let tx = self.write_tx()?;
        tx.execute(
            "UPDATE bundles SET checked_at = ?2, last_error = NULL WHERE name = ?1",
            params![name, now_rfc3339()],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Notes a failed attempt. The stored archive stays (it is still the last good one); the
    /// ETag is cleared so the next poll downloads the archive again, as OPA's downloader does.
    pub fn bundle_failed(&mut self, name: &str, url: &str, error: &str) -> Result<(), StoreError> {
        let sql = self.sqlite();
        let now = now_rfc3339();
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO bundles (name, url, checked_at, last_error) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET etag = NULL, checked_at = excluded.checked_at,
                 last_error = excluded.last_error",
            params![name, url, now, error],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Journals a bundle activation (`failed: false`) or a refused one. `body` holds the bundle
    /// name, revision, etag, signer key id, and the errors of a refused one.
    pub fn record_bundle_activation(
        &mut self,
        body: &Value,
        failed: bool,
    ) -> Result<i64, StoreError> {
        let kind = if failed {
            Kind::BundleActivationFailed
        } else {
            Kind::BundleActivated
        };
        self.record_event(kind, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("behavry.db")).unwrap();
        (dir, store)
    }

    const URL: &str = "https://example.com/b.tar.gz";

    #[test]
    fn stores_archives_and_keeps_the_last_good_one_on_failure() {
        let (_dir, mut store) = store();
        assert_eq!(store.bundle("org").unwrap(), None);
        let fetched = Fetched {
            archive: b"bytes",
            etag: Some("\"e1\""),
            sha256: "abc",
            revision: "r1",
            signer: Some("k1"),
        };
        store.store_bundle("org", URL, &fetched).unwrap();
        assert_eq!(
            store.bundle_sha256("org", URL).unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(store.bundle_sha256("org", "https://other").unwrap(), None);
        store.bundle_failed("org", URL, "HTTP 500").unwrap();
        let row = store.bundle("org").unwrap().unwrap();
        assert_eq!(row.archive.as_deref(), Some(&b"bytes"[..]));
        assert_eq!(row.revision.as_deref(), Some("r1"));
        assert_eq!(row.etag, None, "an error clears the etag");
        assert_eq!(row.last_error.as_deref(), Some("HTTP 500"));
        store.bundle_unchanged("org").unwrap();
        assert_eq!(store.bundle("org").unwrap().unwrap().last_error, None);
    }

    #[test]
    fn one_lease_holder_until_it_expires_or_dies() {
        let (dir, mut store) = store();
        let other = Store::open(&dir.path().join("behavry.db")).unwrap();
        assert!(store.take_bundle_lease("org", URL, 100, 10).unwrap());
        assert!(
            store.take_bundle_lease("org", URL, 105, 10).unwrap(),
            "renewed"
        );
        // A lease far ahead of any holder's, for a live process: not a holder's, so void.
        store
            .conn()
            .execute(
                "UPDATE bundles SET lease_instance = '1:0', lease_expires_at = 99999999999 WHERE name = 'org'",
                [],
            )
            .unwrap();
        assert!(store.take_bundle_lease("org", URL, 106, 10).unwrap());
        // Another holder's lease, recorded for a live process (pid 1, start unknown = alive).
        other
            .conn()
            .execute(
                "UPDATE bundles SET lease_instance = '1:0', lease_expires_at = 200 WHERE name = 'org'",
                [],
            )
            .unwrap();
        assert!(!store.take_bundle_lease("org", URL, 150, 10).unwrap());
        assert!(
            store.take_bundle_lease("org", URL, 200, 10).unwrap(),
            "expired"
        );
        // A holder that is no longer running loses it at once.
        other
            .conn()
            .execute(
                "UPDATE bundles SET lease_instance = '4194999:1', lease_expires_at = 900 WHERE name = 'org'",
                [],
            )
            .unwrap();
        assert!(store.take_bundle_lease("org", URL, 210, 10).unwrap());
        store.release_bundle_lease("org").unwrap();
        assert_eq!(store.bundle("org").unwrap().unwrap().lease_pid, None);
    }

    #[test]
    fn a_new_url_resets_the_row() {
        let (_dir, mut store) = store();
        let fetched = Fetched {
            archive: b"bytes",
            etag: None,
            sha256: "abc",
            revision: "r1",
            signer: None,
        };
        store.store_bundle("org", URL, &fetched).unwrap();
        assert!(store
            .take_bundle_lease("org", "https://new/b", 1, 10)
            .unwrap());
        let row = store.bundle("org").unwrap().unwrap();
        assert_eq!((row.url.as_str(), row.archive), ("https://new/b", None));
    }

    #[test]
    fn a_lease_taken_over_stops_the_old_holder_storing() {
        let (dir, mut store) = store();
        let other = Store::open(&dir.path().join("behavry.db")).unwrap();
        let fetched = |sha256| Fetched {
            archive: b"bytes",
            etag: None,
            sha256,
            revision: "r1",
            signer: None,
        };
        assert!(store.take_bundle_lease("org", URL, 100, 10).unwrap());
        assert!(store.store_bundle("org", URL, &fetched("a")).unwrap());
        // Another running process (pid 1, start unknown = alive) holds it now.
        other
            .conn()
            .execute(
                "UPDATE bundles SET lease_instance = '1:0', lease_expires_at = 200 WHERE name = 'org'",
                [],
            )
            .unwrap();
        assert!(!store.store_bundle("org", URL, &fetched("b")).unwrap());
        assert_eq!(
            store.bundle_sha256("org", URL).unwrap().as_deref(),
            Some("a")
        );
        // Taken back over: the previous running holder is named, and storing works again.
        assert_eq!(
            store.take_over_bundle_lease("org", URL, 150, 10).unwrap(),
            Some(1)
        );
        assert!(store.store_bundle("org", URL, &fetched("c")).unwrap());
        assert_eq!(
            store.take_over_bundle_lease("org", URL, 151, 10).unwrap(),
            None
        );
    }
}
