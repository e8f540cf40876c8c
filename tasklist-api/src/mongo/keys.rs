//! Idempotency-Key bindings in MongoDB: one document per user and key (its `_id`), so two
//! instances binding one key at once get one binding (the second insert is a duplicate and
//! reads the first). Expired bindings are deleted as new ones are made (an index on `boundAt`).

use futures::FutureExt;
use futures::future::BoxFuture;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use taskpool_tasklist::actions::keys::{KeyBinding, KeyStore};
use taskpool_tasklist::view::ViewError;
use uuid::Uuid;

use crate::mongo::store::MongoStore;

pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";

/// Duplicate key: another binding of this user and key was stored first.
const DUPLICATE_KEY: i32 = 11000;

/// The bindings, in the projection's database (not in a generation: a rebuild keeps them).
#[derive(Debug, Clone)]
pub struct MongoKeys {
    store: MongoStore,
}

impl MongoKeys {
    pub fn new(store: MongoStore) -> MongoKeys {
        MongoKeys { store }
    }

    fn collection(&self) -> Collection<Document> {
        self.store.database().collection(IDEMPOTENCY_KEYS)
    }

    /// The index that finds expired bindings.
    pub async fn ensure_index(&self) -> mongodb::error::Result<()> {
        let index = IndexModel::builder()
            .keys(doc! { "boundAt": 1 })
            .options(IndexOptions::builder().name("bound_at".to_string()).build())
            .build();
        self.store
            .timed(self.collection().create_index(index))
            .await
            .map(drop)
    }

    async fn find(&self, id: &str, valid_since: i64) -> mongodb::error::Result<Option<KeyBinding>> {
        let filter = doc! { "_id": id, "boundAt": { "$gte": valid_since } };
        let found = self.store.timed(self.collection().find_one(filter)).await?;
        // A binding that cannot be read is an error, not a missing one (which would be made
        // again over it, in vain).
        found
            .map(|document| {
                binding_of(&document).ok_or_else(|| {
                    mongodb::error::Error::custom(format!("unreadable idempotency key {id:?}"))
                })
            })
            .transpose()
    }

    /// Stores `binding` unless the key is bound (then that binding); tries once more when the
    /// binding in the way expired meanwhile (`retry`).
    async fn insert(
        &self,
        binding: &KeyBinding,
        valid_since: i64,
        retry: bool,
    ) -> mongodb::error::Result<KeyBinding> {
        let id = document_id(&binding.user, &binding.key);
        let expired = doc! { "boundAt": { "$lt": valid_since } };
        self.store
            .timed(self.collection().delete_many(expired))
            .await?;
        let document = doc! {
            "_id": &id,
            "request": &binding.request,
            "commandId": binding.command_id.to_string(),
            "boundAt": binding.bound_at,
            "sent": binding.sent,
        };
        match self
            .store
            .timed(self.collection().insert_one(document))
            .await
        {
            Ok(_) => Ok(binding.clone()),
            Err(error) if duplicate(&error) => match self.find(&id, valid_since).await? {
                Some(first) => Ok(first),
                // The first one expired between the two: this one may take its place.
                None if retry => Box::pin(self.insert(binding, valid_since, false)).await,
                None => Err(error),
            },
            Err(error) => Err(error),
        }
    }
}

impl KeyStore for MongoKeys {
    fn bound<'a>(
        &'a self,
        user: &'a str,
        key: &'a str,
        valid_since: i64,
    ) -> BoxFuture<'a, Result<Option<KeyBinding>, ViewError>> {
        async move {
            self.find(&document_id(user, key), valid_since)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn bind<'a>(
        &'a self,
        binding: &'a KeyBinding,
        valid_since: i64,
    ) -> BoxFuture<'a, Result<KeyBinding, ViewError>> {
        async move {
            self.insert(binding, valid_since, true)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn confirm<'a>(&'a self, user: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), ViewError>> {
        async move {
            let filter = doc! { "_id": document_id(user, key) };
            let sent = doc! { "$set": { "sent": true } };
            self.store
                .timed(self.collection().update_one(filter, sent))
                .await
                .map(drop)
                .map_err(ViewError::new)
        }
        .boxed()
    }
}

/// One document per user and key (a user id has no newline: identity refuses control
/// characters).
fn document_id(user: &str, key: &str) -> String {
    format!("{user}\n{key}")
}

fn binding_of(document: &Document) -> Option<KeyBinding> {
    let id = document.get_str("_id").ok()?;
    let (user, key) = id.split_once('\n')?;
    Some(KeyBinding {
        user: user.to_string(),
        key: key.to_string(),
        request: document.get_str("request").ok()?.to_string(),
        command_id: Uuid::parse_str(document.get_str("commandId").ok()?).ok()?,
        bound_at: document.get_i64("boundAt").ok()?,
        sent: document.get_bool("sent").unwrap_or(false),
    })
}

fn duplicate(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e))
            if e.code == DUPLICATE_KEY
    )
}
