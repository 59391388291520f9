//! Issue 14, the `command` workload in the coordinator's core: a command trial is leased only
//! to an agent that declares the command, and creating an experiment whose command no connected
//! agent declares answers with a warning that names it.

#[path = "fleet/support.rs"]
// This file uses only some of the shared helpers.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use coordinator::service::model::{AgentCapabilities, Workload};
use coordinator::service::{AgentService, ExperimentService, LeaseOutcome};
use coordinator::store::MemoryStore;
use support::{agent, lease_now, running, settings, spec, start};

#[tokio::test(start_paused = true)]
async fn issue_14_command_trials_go_only_to_agents_that_declare_the_command() {
    let store = MemoryStore::new();
    let coordinator = start(&store, settings()).await;
    let mut command_spec = spec("own-model", 2, 2);
    command_spec.metric = "dev_auc".into();
    command_spec.workload = Some(Workload {
        kind: "command".into(),
        command: "train".into(),
        ..Workload::default()
    });
    let workload = command_spec.workload.clone();
    let warnings = coordinator.placement_warnings(workload.as_ref());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("no connected agent declares command 'train'"),
        "{warnings:?}"
    );
    let id = running(&coordinator, command_spec, 2).await;

    // An agent of any workload kind, or one declaring other commands, is offered nothing.
    let function_agent = agent(&coordinator).await;
    let other = AgentCapabilities {
        workloads: vec!["command".into()],
        commands: vec!["evaluate".into()],
        ..AgentCapabilities::default()
    };
    let other_agent = coordinator
        .register_agent(other, None, None)
        .await
        .expect("registers")
        .agent_id;
    for refused in [&function_agent, &other_agent] {
        let outcome = coordinator
            .lease_trial(refused.clone(), Duration::ZERO, None)
            .await
            .expect("lease call");
        assert!(
            matches!(outcome, LeaseOutcome::RetryAfter(_)),
            "{outcome:?}"
        );
    }
    assert_eq!(coordinator.placement_warnings(workload.as_ref()).len(), 1);

    let declaring = AgentCapabilities {
        workloads: vec!["function".into(), "command".into()],
        commands: vec!["evaluate".into(), "train".into()],
        ..AgentCapabilities::default()
    };
    let trainer = coordinator
        .register_agent(declaring, None, None)
        .await
        .expect("registers")
        .agent_id;
    assert!(coordinator.placement_warnings(workload.as_ref()).is_empty());
    let lease = lease_now(&coordinator, &trainer).await;
    assert_eq!(lease.experiment_id, id);
    let function = spec("function", 1, 1);
    assert!(
        coordinator
            .placement_warnings(function.workload.as_ref())
            .is_empty()
    );
}
