//! Spec defaults and the metric check at create, against the real tonic server (issue 16, "a new
//! user's first hour"): a spec that names no metric gets its workload's, a metric the workload
//! never reports is refused before anything is stored, and the initial design of a BO spec that
//! names none scales with the budget; the GP's cap on results (`max_model_points`) is stored
//! resolved and checked.

#[path = "common/server.rs"]
mod server;

use coordinator::service::Settings;
use coordinator::store::MemoryStore;
use proto::v1 as pb;
use proto::v1::experiment_service_client::ExperimentServiceClient;
use server::Server;
use tonic::Code;
use tonic::transport::Channel;

fn float_param(name: &str, low: f64, high: f64) -> pb::ParameterSpec {
    pb::ParameterSpec {
        name: name.into(),
        kind: Some(pb::parameter_spec::Kind::Float(pb::FloatParam {
            step: None,
            low,
            high,
            log: false,
            default_value: None,
        })),
    }
}

/// A BO spec of `kind` over two parameters, with no metric and no initial trials.
fn spec(kind: &str, budget: u32) -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        name: format!("{kind}-defaults"),
        direction: pb::Direction::Maximize as i32,
        strategy: pb::Strategy::Bo as i32,
        budget_trials: budget,
        parallelism: 1,
        parameters: vec![
            float_param("learning_rate", 1e-4, 1e-1),
            float_param("dropout", 0.1, 0.9),
        ],
        seed: 3,
        workload: Some(pb::Workload {
            kind: kind.into(),
            dataset: if kind == "function" {
                "quadratic"
            } else {
                "mr"
            }
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(
    experiments: &mut ExperimentServiceClient<Channel>,
    spec: pb::ExperimentSpec,
) -> Result<pb::ExperimentSpec, tonic::Status> {
    let response = experiments
        .create_experiment(pb::CreateExperimentRequest { spec: Some(spec) })
        .await?;
    let experiment = response.into_inner().experiment.expect("has an experiment");
    Ok(experiment.spec.expect("has a spec"))
}

async fn experiment_count(experiments: &mut ExperimentServiceClient<Channel>) -> usize {
    experiments
        .list_experiments(pb::ListExperimentsRequest::default())
        .await
        .expect("lists")
        .into_inner()
        .experiments
        .len()
}

#[tokio::test]
async fn a_spec_without_a_metric_gets_its_workloads_default() {
    let server = Server::start(MemoryStore::new(), Settings::default(), None).await;
    let mut experiments = server.experiments().await;
    let textcnn = create(&mut experiments, spec("textcnn", 30)).await;
    assert_eq!(textcnn.expect("created").metric, "dev_accuracy");
    let function = create(&mut experiments, spec("function", 30)).await;
    assert_eq!(function.expect("created").metric, "value");
    let mut alias = spec("textcnn", 30);
    alias.metric = "train_loss".into();
    assert_eq!(
        create(&mut experiments, alias)
            .await
            .expect("created")
            .metric,
        "train_loss"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_metric_the_workload_does_not_report_is_refused_naming_what_it_reports() {
    let server = Server::start(MemoryStore::new(), Settings::default(), None).await;
    let mut experiments = server.experiments().await;
    let mut wrong = spec("textcnn", 30);
    wrong.metric = "value".into();
    let refused = create(&mut experiments, wrong)
        .await
        .expect_err("textcnn reports no 'value'");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        refused.message(),
        "metric 'value' is not reported by the textcnn workload \
         (it reports: dev_accuracy, train_accuracy, train_loss)"
    );
    let mut wrong_function = spec("function", 30);
    wrong_function.metric = "dev_accuracy".into();
    let refused = create(&mut experiments, wrong_function)
        .await
        .expect_err("function reports only 'value'");
    assert!(
        refused.message().contains("(it reports: value)"),
        "{refused:?}"
    );
    assert_eq!(experiment_count(&mut experiments).await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_initial_design_scales_with_the_budget_and_an_explicit_one_is_kept() {
    let server = Server::start(MemoryStore::new(), Settings::default(), None).await;
    let mut experiments = server.experiments().await;
    let small = create(&mut experiments, spec("function", 10)).await;
    assert_eq!(small.expect("created").initial_trials, 3, "d + 1 for d = 2");
    let medium = create(&mut experiments, spec("function", 30)).await;
    assert_eq!(
        medium.expect("created").initial_trials,
        7,
        "a quarter of 30"
    );
    let large = create(&mut experiments, spec("function", 240)).await;
    assert_eq!(
        large.expect("created").initial_trials,
        Settings::default().default_initial_trials.get(),
        "capped by default_initial_trials"
    );
    let mut explicit = spec("function", 10);
    explicit.initial_trials = 8;
    assert_eq!(
        create(&mut experiments, explicit)
            .await
            .expect("created")
            .initial_trials,
        8
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_model_cap_defaults_to_the_tuners_and_a_bad_one_is_refused_naming_it() {
    let server = Server::start(MemoryStore::new(), Settings::default(), None).await;
    let mut experiments = server.experiments().await;
    let default = create(&mut experiments, spec("function", 30)).await;
    assert_eq!(
        default.expect("created").max_model_points as usize,
        tuner::DEFAULT_MAX_MODEL_POINTS,
        "stored as run"
    );
    let mut explicit = spec("function", 30);
    explicit.max_model_points = 2_000;
    assert_eq!(
        create(&mut experiments, explicit)
            .await
            .expect("created")
            .max_model_points,
        2_000
    );
    for (bad, says) in [(3, "at least 8"), (50_000, "at most 5000")] {
        let mut refused_spec = spec("function", 30);
        refused_spec.max_model_points = bad;
        let refused = create(&mut experiments, refused_spec)
            .await
            .expect_err("out of range");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains("max_model_points") && refused.message().contains(says),
            "{refused:?}"
        );
    }
    assert_eq!(
        experiment_count(&mut experiments).await,
        2,
        "the refused specs stored nothing"
    );
    server.shutdown().await;
}
