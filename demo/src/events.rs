//! The collector's events as the demo reports them: tasks, and the request's data entry with a
//! line in its protocol.

use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::domain::data_entry::ProtocolNote;
use taskpool_schemas::ProcessingType;
use tracing::warn;

use crate::process::{ENTRY_TYPE, Request, entry_content};
use taskpool_service::logging::error_chain;

/// Records an event the engine produced itself: its order is always valid.
pub(crate) fn record(collector: &mut Collector, event: EngineEvent) {
    if let Err(error) = collector.record(event) {
        warn!(
            error = error_chain(&error),
            "the demo reported an event out of order"
        );
    }
}

pub(crate) fn note(user: &str, message: &str) -> Option<ProtocolNote> {
    Some(ProtocolNote {
        username: Some(user.to_string()),
        log_message: Some(message.to_string()),
        log_details: None,
    })
}

pub(crate) fn entry_changed(
    collector: &mut Collector,
    request: &Request,
    processing: ProcessingType,
    note: Option<ProtocolNote>,
) {
    record(
        collector,
        EngineEvent::DataEntryChanged {
            entry_type: ENTRY_TYPE.into(),
            entry_id: request.id.clone(),
            content: Box::new(entry_content(request, processing)),
            note,
        },
    );
}
