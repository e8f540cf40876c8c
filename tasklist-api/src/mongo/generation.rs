//! Generations of the view's collections. A rebuild writes a new generation next to the live
//! one, then switches every reader and writer over by changing one document, the pointer in
//! `view_generation` (decision 0022). Generation 0 is the original `tasks` / `data_entries`,
//! so a database that never saw a rebuild reads as before.

use mongodb::Database;
use mongodb::bson::{Document, doc};

/// The collection holding the pointer (`_id: "active"`) and the rebuild lock (`_id: "rebuild"`).
pub const META: &str = "view_generation";
const ACTIVE: &str = "active";
const LOCK: &str = "rebuild";
/// Duplicate key: another holder has the lock.
const DUPLICATE_KEY: i32 = 11000;

/// One generation of the view's collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Generation(pub u64);

impl Generation {
    pub fn tasks(self) -> String {
        self.name("tasks")
    }

    pub fn data_entries(self) -> String {
        self.name("data_entries")
    }

    fn name(self, base: &str) -> String {
        match self.0 {
            0 => base.to_string(),
            n => format!("{base}_g{n}"),
        }
    }

    /// The generation a collection name belongs to, if it is one of the view's.
    pub fn of_collection(name: &str) -> Option<Generation> {
        for base in ["tasks", "data_entries"] {
            if name == base {
                return Some(Generation(0));
            }
            if let Some(number) = name
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix("_g"))
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
            {
                return Some(Generation(number));
            }
        }
        None
    }
}

/// The generation readers and writers use now.
pub async fn active(database: &Database) -> mongodb::error::Result<Generation> {
    let pointer = database
        .collection::<Document>(META)
        .find_one(doc! { "_id": ACTIVE })
        .await?;
    Ok(Generation(
        pointer
            .and_then(|p| integer(&p, "generation"))
            .map_or(0, |n| n.max(0) as u64),
    ))
}

/// Makes `generation` the active one: a single-document write, so every reader sees either
/// the old pointer or the new one.
pub async fn switch_to(database: &Database, generation: Generation) -> mongodb::error::Result<()> {
    database
        .collection::<Document>(META)
        .update_one(
            doc! { "_id": ACTIVE },
            doc! { "$set": {
                "generation": generation.0 as i64,
                "switchedAt": taskpool_schemas::Timestamp::now().millis(),
            } },
        )
        .upsert(true)
        .await?;
    Ok(())
}

/// Every generation that has a collection in the database.
pub async fn present(database: &Database) -> mongodb::error::Result<Vec<Generation>> {
    let mut generations: Vec<Generation> = database
        .list_collection_names()
        .await?
        .iter()
        .filter_map(|name| Generation::of_collection(name))
        .collect();
    generations.sort();
    generations.dedup();
    Ok(generations)
}

/// Drops a generation's collections (absent ones are fine).
pub async fn drop(database: &Database, generation: Generation) -> mongodb::error::Result<()> {
    for name in [generation.tasks(), generation.data_entries()] {
        database.collection::<Document>(&name).drop().await?;
    }
    Ok(())
}

/// Who holds the rebuild lock, when someone else does.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another rebuild is running ({holder}, last seen {seconds_ago} s ago)")]
    Held { holder: String, seconds_ago: i64 },
    #[error("MongoDB")]
    Mongo(#[from] mongodb::error::Error),
}

/// Takes the rebuild lock for `holder`. A lock not renewed for `stale_after_ms` (its rebuild
/// was killed) is taken over.
pub async fn lock(database: &Database, holder: &str, stale_after_ms: i64) -> Result<(), LockError> {
    let meta = database.collection::<Document>(META);
    let now = taskpool_schemas::Timestamp::now().millis();
    let taken = meta
        .update_one(
            doc! { "_id": LOCK, "renewedAt": { "$lt": now - stale_after_ms } },
            doc! { "$set": { "holder": holder, "renewedAt": now } },
        )
        .upsert(true)
        .await;
    match taken {
        Ok(_) => Ok(()),
        Err(error) if is_duplicate_key(&error) => {
            let current = meta.find_one(doc! { "_id": LOCK }).await?;
            let current = current.unwrap_or_default();
            Err(LockError::Held {
                holder: current.get_str("holder").unwrap_or("?").to_string(),
                seconds_ago: (now - integer(&current, "renewedAt").unwrap_or(now)) / 1000,
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Renews the lock (the rebuild is alive).
pub async fn renew(database: &Database, holder: &str) -> mongodb::error::Result<()> {
    database
        .collection::<Document>(META)
        .update_one(
            doc! { "_id": LOCK, "holder": holder },
            doc! { "$set": { "renewedAt": taskpool_schemas::Timestamp::now().millis() } },
        )
        .await?;
    Ok(())
}

pub async fn unlock(database: &Database, holder: &str) -> mongodb::error::Result<()> {
    database
        .collection::<Document>(META)
        .delete_one(doc! { "_id": LOCK, "holder": holder })
        .await?;
    Ok(())
}

/// An integer field, whichever integer type the server returns it as.
fn integer(document: &Document, field: &str) -> Option<i64> {
    match document.get(field)? {
        mongodb::bson::Bson::Int32(n) => Some(i64::from(*n)),
        mongodb::bson::Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => {
            e.code == DUPLICATE_KEY
        }
        mongodb::error::ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => error.to_string().contains("E11000") || error.to_string().contains("11000"),
    }
}

#[cfg(test)]
mod tests {
    use super::Generation;

    #[test]
    fn generation_zero_is_the_original_collections() {
        assert_eq!(Generation(0).tasks(), "tasks");
        assert_eq!(Generation(0).data_entries(), "data_entries");
        assert_eq!(Generation(3).tasks(), "tasks_g3");
        assert_eq!(Generation(3).data_entries(), "data_entries_g3");
    }

    #[test]
    fn collection_names_are_read_back_as_generations() {
        for n in [0, 1, 17] {
            let g = Generation(n);
            assert_eq!(Generation::of_collection(&g.tasks()), Some(g));
            assert_eq!(Generation::of_collection(&g.data_entries()), Some(g));
        }
        for other in [
            "dead_letters",
            "view_generation",
            "tasks_g",
            "tasks_g0",
            "tasks_x1",
        ] {
            assert_eq!(Generation::of_collection(other), None, "{other}");
        }
    }
}
