//! The projection's dead letters for a person with a terminal: list them with their reasons,
//! show one, retry them (after fixing the cause, e.g. with a version of tasklist-api that reads
//! a newer schema: each is decoded and applied again, version-guarded, and removed once
//! applied), or discard them (removed, and logged).

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use serde_json::json;
use taskpool_schemas::decode;
use taskpool_service::logging::error_chain;
use tracing::{info, warn};

use crate::mongo::store::{DEAD_LETTERS, MongoStore};
use taskpool_tasklist::fold::Folded;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("MongoDB")]
    Mongo(#[from] mongodb::error::Error),
    #[error("the view")]
    View(#[from] taskpool_tasklist::view::ViewError),
    #[error("{0:?} is not a dead letter's id")]
    BadId(String),
}

/// A dead letter as stored: its id and document.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: ObjectId,
    pub document: Document,
}

fn ids(texts: &[String]) -> Result<Vec<ObjectId>, DeadLetterError> {
    texts
        .iter()
        .map(|t| ObjectId::parse_str(t).map_err(|_| DeadLetterError::BadId(t.clone())))
        .collect()
}

/// The dead letters, oldest failure first (all of them, or those with these ids).
pub async fn list(
    store: &MongoStore,
    only: Option<&[String]>,
) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let filter = match only {
        Some(texts) => doc! { "_id": { "$in": ids(texts)? } },
        None => doc! {},
    };
    let documents: Vec<Document> = store
        .timed(async {
            store
                .database()
                .collection::<Document>(DEAD_LETTERS)
                .find(filter)
                .sort(doc! { "failedAt": 1, "_id": 1 })
                .await?
                .try_collect()
                .await
        })
        .await?;
    Ok(documents
        .into_iter()
        .filter_map(|document| {
            let id = document.get_object_id("_id").ok()?;
            Some(DeadLetter { id, document })
        })
        .collect())
}

impl DeadLetter {
    fn payload(&self) -> &[u8] {
        match self.document.get("payload") {
            Some(Bson::Binary(binary)) => &binary.bytes,
            _ => &[],
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let d = &self.document;
        json!({
            "id": self.id.to_hex(),
            "topic": d.get_str("topic").unwrap_or_default(),
            "partition": d.get_i32("partition").ok(),
            "offset": d.get_i64("offset").ok(),
            "key": d.get_str("key").ok(),
            "reason": d.get_str("reason").unwrap_or_default(),
            "failedAt": d.get_i64("failedAt").ok(),
            "payloadBytes": self.payload().len(),
        })
    }

    pub fn line(&self) -> String {
        let d = &self.document;
        format!(
            "{}  {}[{}]@{}  key {}  {}",
            self.id.to_hex(),
            d.get_str("topic").unwrap_or_default(),
            d.get_i32("partition").unwrap_or_default(),
            d.get_i64("offset").unwrap_or_default(),
            d.get_str("key").unwrap_or("-"),
            d.get_str("reason").unwrap_or_default()
        )
    }
}

/// What a retry did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Retried {
    pub applied: Vec<String>,
    pub refused: Vec<(String, String)>,
}

async fn delete(store: &MongoStore, id: ObjectId) -> Result<(), mongodb::error::Error> {
    store
        .timed(
            store
                .database()
                .collection::<Document>(DEAD_LETTERS)
                .delete_one(doc! { "_id": id }),
        )
        .await
        .map(|_| ())
}

/// Decodes and applies the selected dead letters again (version-guarded, so an old event
/// changes nothing); each applied one is removed, one that fails again stays with the new reason.
pub async fn retry(
    store: &MongoStore,
    only: Option<&[String]>,
) -> Result<Retried, DeadLetterError> {
    let mut retried = Retried::default();
    for letter in list(store, only).await? {
        let outcome = match decode(letter.payload()) {
            Ok(event) => {
                let mut folded = Folded::new();
                folded.add(&event, 0);
                let written = folded.write(store).await?;
                match written.refused.first() {
                    Some((_, reason)) => Err(format!("not applicable: {reason}")),
                    None => Ok(()),
                }
            }
            Err(error) => Err(format!("undecodable: {}", error_chain(&error))),
        };
        let id = letter.id.to_hex();
        match outcome {
            Ok(()) => {
                delete(store, letter.id).await?;
                info!(id, "dead letter applied and removed");
                retried.applied.push(id);
            }
            Err(reason) => {
                store
                    .timed(
                        store
                            .database()
                            .collection::<Document>(DEAD_LETTERS)
                            .update_one(
                                doc! { "_id": letter.id },
                                doc! { "$set": { "reason": &reason } },
                            ),
                    )
                    .await?;
                warn!(id, reason, "dead letter failed again; it stays");
                retried.refused.push((id, reason));
            }
        }
    }
    Ok(retried)
}

/// Removes these dead letters for good; each is logged with what it was.
pub async fn discard(store: &MongoStore, only: &[String]) -> Result<Vec<String>, DeadLetterError> {
    let mut discarded = Vec::new();
    for letter in list(store, Some(only)).await? {
        delete(store, letter.id).await?;
        warn!(dead_letter = %letter.to_json(), "dead letter discarded");
        discarded.push(letter.id.to_hex());
    }
    Ok(discarded)
}
