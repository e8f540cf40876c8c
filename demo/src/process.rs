//! The purchase-request process, free of I/O: its steps, who each step is for, what follows
//! when one is completed, and the task and data entry the collector is told about.

use std::collections::BTreeSet;

use taskpool_core::domain::data_entry::DataEntryContent;
use taskpool_core::domain::task::NewTask;
use taskpool_schemas::{
    DataEntryReference, DataEntryState, Payload, ProcessingType, SourceReference, Timestamp,
};

use crate::config::DemoConfig;

pub const APPLICATION: &str = "demo-purchasing";
pub const PROCESS_KEY: &str = "purchase-request";
pub const ENTRY_TYPE: &str = "purchase-request";

/// The user-task steps of a request's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Approve,
    Revise,
    Order,
    ConfirmReceipt,
}

impl Step {
    pub fn key(self) -> &'static str {
        match self {
            Step::Approve => "approve",
            Step::Revise => "revise",
            Step::Order => "order",
            Step::ConfirmReceipt => "confirm-receipt",
        }
    }

    pub fn parse(key: &str) -> Option<Step> {
        [
            Step::Approve,
            Step::Revise,
            Step::Order,
            Step::ConfirmReceipt,
        ]
        .into_iter()
        .find(|step| step.key() == key)
    }

    pub fn title(self) -> &'static str {
        match self {
            Step::Approve => "Approve purchase request",
            Step::Revise => "Revise purchase request",
            Step::Order => "Order the goods",
            Step::ConfirmReceipt => "Confirm receipt",
        }
    }

    /// The request's state while this step waits.
    pub fn request_state(self) -> &'static str {
        match self {
            Step::Approve => "waiting for approval",
            Step::Revise => "returned for revision",
            Step::Order => "approved, to be ordered",
            Step::ConfirmReceipt => "ordered",
        }
    }
}

/// A request as the demo's own table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub requester: String,
    pub item: String,
    pub amount: i64,
    pub state: String,
}

/// Who a step's task is offered to: a group, or one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates {
    Group(String),
    User(String),
}

/// Who works on a step of this request.
pub fn candidates(step: Step, request: &Request, config: &DemoConfig) -> Candidates {
    match step {
        Step::Approve if request.amount >= config.manager_threshold => {
            Candidates::Group("managers".into())
        }
        Step::Approve => Candidates::Group("approvers".into()),
        Step::Order => Candidates::Group("purchasing".into()),
        Step::Revise | Step::ConfirmReceipt => Candidates::User(request.requester.clone()),
    }
}

/// What follows a completed step: the next step, or the end with the request's final state.
/// `approved` is the approver's decision (only asked for [`Step::Approve`]).
pub fn after(step: Step, approved: bool) -> Result<Step, &'static str> {
    match step {
        Step::Approve if approved => Ok(Step::Order),
        Step::Approve => Ok(Step::Revise),
        Step::Revise => Ok(Step::Approve),
        Step::Order => Ok(Step::ConfirmReceipt),
        Step::ConfirmReceipt => Err("received"),
    }
}

pub const ITEMS: [&str; 8] = [
    "Standing desk",
    "Laptop",
    "Conference headset",
    "Office chair",
    "Monitor 27\"",
    "Whiteboard",
    "Coffee machine",
    "Projector",
];

/// The task the collector is told about when a step starts.
pub fn new_task(
    step: Step,
    request: &Request,
    candidates: &Candidates,
    priority: i32,
    due_date: Option<Timestamp>,
    now: Timestamp,
) -> NewTask {
    let (candidate_users, candidate_groups): (BTreeSet<String>, BTreeSet<String>) = match candidates
    {
        Candidates::Group(group) => (BTreeSet::new(), BTreeSet::from([group.clone()])),
        Candidates::User(user) => (BTreeSet::from([user.clone()]), BTreeSet::new()),
    };
    let mut payload = Payload::new();
    payload.0.insert("item".into(), request.item.clone().into());
    payload.0.insert("amount".into(), request.amount.into());
    payload
        .0
        .insert("requester".into(), request.requester.clone().into());
    NewTask {
        source_reference: SourceReference {
            process_instance_id: request.id.clone(),
            execution_id: format!("{}:{}", request.id, step.key()),
            process_definition_id: format!("{PROCESS_KEY}:1"),
            process_definition_key: PROCESS_KEY.into(),
            process_name: "Purchase request".into(),
            application_name: APPLICATION.into(),
            tenant_id: None,
        },
        task_definition_key: step.key().into(),
        name: step.title().into(),
        description: Some(format!(
            "{}, {} EUR, requested by {}",
            request.item, request.amount, request.requester
        )),
        form_key: Some(format!("{PROCESS_KEY}/{}", step.key())),
        priority,
        create_time: now,
        due_date,
        follow_up_date: None,
        assignee: None,
        owner: None,
        candidate_users,
        candidate_groups,
        business_key: Some(request.id.clone()),
        payload,
        correlations: vec![reference(request)],
    }
}

/// The data entry a task of this request points to.
pub fn reference(request: &Request) -> DataEntryReference {
    DataEntryReference {
        entry_type: ENTRY_TYPE.into(),
        entry_id: request.id.clone(),
    }
}

/// The request as a data entry: seen by its requester and everyone who may work on it.
pub fn entry_content(request: &Request, processing: ProcessingType) -> DataEntryContent {
    let mut payload = Payload::new();
    payload.0.insert("item".into(), request.item.clone().into());
    payload.0.insert("amount".into(), request.amount.into());
    DataEntryContent {
        type_name: "Purchase request".into(),
        application_name: APPLICATION.into(),
        name: format!("{}: {}", request.id, request.item),
        description: Some(format!(
            "{} EUR, requested by {}",
            request.amount, request.requester
        )),
        state: DataEntryState {
            processing_type: processing,
            state: request.state.clone(),
        },
        payload,
        correlations: vec![],
        authorized_users: BTreeSet::from([request.requester.clone()]),
        authorized_groups: ["approvers", "managers", "purchasing"]
            .map(String::from)
            .into(),
        form_key: Some(format!("{PROCESS_KEY}/view")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(amount: i64) -> Request {
        Request {
            id: "PR-1".into(),
            requester: "rowlf".into(),
            item: "Laptop".into(),
            amount,
            state: "new".into(),
        }
    }

    #[test]
    fn big_requests_go_to_managers_and_receipts_to_the_requester() {
        let config = DemoConfig::default();
        assert_eq!(
            candidates(Step::Approve, &request(100), &config),
            Candidates::Group("approvers".into())
        );
        assert_eq!(
            candidates(Step::Approve, &request(9_000), &config),
            Candidates::Group("managers".into())
        );
        assert_eq!(
            candidates(Step::ConfirmReceipt, &request(100), &config),
            Candidates::User("rowlf".into())
        );
    }

    #[test]
    fn a_request_lives_from_approval_to_receipt_or_round_revision() {
        assert_eq!(after(Step::Approve, true), Ok(Step::Order));
        assert_eq!(after(Step::Approve, false), Ok(Step::Revise));
        assert_eq!(after(Step::Revise, true), Ok(Step::Approve));
        assert_eq!(after(Step::Order, true), Ok(Step::ConfirmReceipt));
        assert_eq!(after(Step::ConfirmReceipt, true), Err("received"));
        for step in [
            Step::Approve,
            Step::Revise,
            Step::Order,
            Step::ConfirmReceipt,
        ] {
            assert_eq!(Step::parse(step.key()), Some(step));
        }
    }

    #[test]
    fn a_task_points_to_its_request_and_offers_itself_to_its_candidates() {
        let r = request(100);
        let task = new_task(
            Step::Approve,
            &r,
            &Candidates::Group("approvers".into()),
            60,
            None,
            Timestamp(1),
        );
        assert_eq!(task.correlations, vec![reference(&r)]);
        assert!(task.candidate_groups.contains("approvers"));
        assert_eq!(task.business_key.as_deref(), Some("PR-1"));
        let entry = entry_content(&r, ProcessingType::InProgress);
        assert!(entry.authorized_users.contains("rowlf"));
    }
}
