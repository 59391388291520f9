//! `tunectl study`: runs the study's comparison as experiments, one a strategy and repeat, all
//! tagged with the study's name, and follows them to the end.
//!
//! Each experiment is the built-in scenario's spec ([`crate::scenario`]) with the strategy, the
//! budget, the parallelism and a seed that differs per repeat and strategy; it is named
//! `SCENARIO/STRATEGY/rREPEAT` ([`experiment_name`]) so `tunectl report` can group it.
//!
//! **Grid search under a smaller budget** uses a *coarser* grid, never the first N points of the
//! full grid (those would differ only in the last parameters): the number of levels is the largest
//! `L ≥ 2` whose full grid fits the budget (the study's 3 levels give 729 points on Basic). When
//! even two levels a parameter do not fit (`2^d > N`, e.g. 30 trials over 6 parameters), the grid
//! varies the first `k` parameters of the space at `L` levels, choosing `(k, L)` to use as much of
//! the budget as possible (more parameters on ties), and holds the others at their defaults; on
//! `basic-mini` with 30 trials that is 3 levels on embed_dim, learning_rate and batch_size (27
//! points). The grid experiment's budget is its grid size, so it may run a few trials fewer than
//! the others, which the report's trial column shows. Every repeat of grid search evaluates the
//! same points; repeats differ only through the training noise.
//!
//! **Early stopping** is part of an arm: `bo+median` is BO whose experiments stop lagging trials
//! by the median rule ([`StudyArm`]). An arm's experiments are named by the arm's label
//! (`basic-mini/bo+median/r0`), and arms of the same strategy share seeds, repeat by repeat, so
//! `bo` and `bo+median` start from the same initial design and differ only by the stopping.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use coordinator::grpc::convert::{param_spec_from_pb, rule_to_pb, value_to_pb};
use proto::v1 as pb;
use tuner::early_stop::{AshaRule, MedianRule, Rule};
use tuner::space::{ParamSpec, Space};

use super::data::experiment_name;
use crate::cli::{self, Client};

/// A search strategy on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StrategyName {
    /// Bayesian optimization.
    Bo,
    /// Random search.
    Random,
    /// Grid search.
    Grid,
}

impl StrategyName {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyName::Bo => "bo",
            StrategyName::Random => "random",
            StrategyName::Grid => "grid",
        }
    }

    fn to_pb(self) -> pb::Strategy {
        match self {
            StrategyName::Bo => pb::Strategy::Bo,
            StrategyName::Random => pb::Strategy::Random,
            StrategyName::Grid => pb::Strategy::Grid,
        }
    }

    /// Position in bo, random, grid (the seed derivation's index).
    fn index(self) -> usize {
        self as usize
    }
}

/// A rule by name, with its default settings: `none`, `median` or `asha`.
///
/// # Errors
/// When the name is none of those.
pub fn rule_by_name(name: &str) -> anyhow::Result<Rule> {
    match name {
        "none" => Ok(Rule::None),
        "median" => Ok(Rule::Median(MedianRule::default())),
        "asha" => Ok(Rule::Asha(AshaRule::default())),
        other => anyhow::bail!("unknown early-stopping rule '{other}': use none, median or asha"),
    }
}

/// The label of a strategy's arm under an early-stopping rule: `bo`, `bo+median`, `grid+asha`.
pub fn arm_label(strategy: &str, rule: Rule) -> String {
    match rule {
        Rule::None => strategy.to_string(),
        rule => format!("{strategy}+{}", rule.label()),
    }
}

/// One arm of a study: a strategy and the early-stopping rule of its experiments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StudyArm {
    /// The search strategy.
    pub strategy: StrategyName,
    /// The early-stopping rule; `None` runs every trial to the end.
    pub rule: Option<Rule>,
}

impl StudyArm {
    /// The label in experiment names and reports: `bo`, or `bo+median` with a rule.
    pub fn label(&self, default_rule: Rule) -> String {
        arm_label(self.strategy.as_str(), self.rule.unwrap_or(default_rule))
    }
}

impl FromStr for StudyArm {
    type Err = anyhow::Error;

    /// `bo`, `random`, `grid`, each optionally `+none`, `+median` or `+asha`.
    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (strategy, rule) = match text.split_once('+') {
            Some((strategy, rule)) => (strategy, Some(rule_by_name(rule.trim())?)),
            None => (text, None),
        };
        let strategy =
            <StrategyName as clap::ValueEnum>::from_str(strategy.trim(), true).map_err(|_| {
                anyhow::anyhow!("unknown strategy '{strategy}': use bo, random or grid")
            })?;
        Ok(Self { strategy, rule })
    }
}

/// What `tunectl study` was asked to run (the parts that shape the experiments).
#[derive(Clone, Debug)]
pub struct StudyPlanRequest {
    /// Study name (the `study` tag).
    pub name: String,
    /// Built-in scenario, or the name of `base` (it names the experiments).
    pub scenario: String,
    /// A user's spec (`tunectl study --spec FILE`) each experiment starts from, instead of the
    /// scenario's.
    pub base: Option<pb::ExperimentSpec>,
    /// Arms compared: strategies, each with or without early stopping.
    pub arms: Vec<StudyArm>,
    /// The early-stopping rule of arms that name none.
    pub early_stopping: Rule,
    /// Trials an experiment (default: the scenario's).
    pub budget: Option<u32>,
    /// Repeats a strategy.
    pub repeats: u32,
    /// Trials leased at once an experiment (default: the scenario's).
    pub parallel: Option<u32>,
    /// Base seed; each experiment's seed is derived from it, the strategy and the repeat.
    pub seed: u64,
    /// Training sentences kept (tests and demos).
    pub max_train: Option<u32>,
    /// Validation sentences kept.
    pub max_dev: Option<u32>,
}

/// One experiment to create.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedExperiment {
    /// Its arm's label (`bo`, `bo+median`).
    pub arm: String,
    /// Repeat index.
    pub repeat: u32,
    /// The spec sent to the coordinator.
    pub spec: pb::ExperimentSpec,
}

/// A grid that fits a budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridPlan {
    /// Levels a varied parameter.
    pub levels: u32,
    /// Parameters varied (the others are held at their defaults).
    pub varied: Vec<String>,
    /// Points of the grid.
    pub points: usize,
}

/// The coarsest-enough grid over `params` for `budget` trials (see the module docs).
///
/// # Errors
/// When the space is invalid or a parameter to hold fixed has no default.
pub fn grid_plan(params: &[ParamSpec], budget: u32) -> anyhow::Result<GridPlan> {
    let budget = budget.max(1) as usize;
    let mut best: Option<GridPlan> = None;
    for varied_count in (1..=params.len()).rev() {
        let varied = &params[..varied_count];
        let space = Space::new(varied.to_vec()).context("invalid search space")?;
        for levels in 2..=16u32 {
            let points = tuner::grid_size(&space, levels as usize);
            if points > budget {
                break;
            }
            if best.as_ref().is_none_or(|b| points > b.points) {
                let names = varied.iter().map(|p| p.name.clone()).collect();
                best = Some(GridPlan {
                    levels,
                    varied: names,
                    points,
                });
            }
        }
        if best
            .as_ref()
            .is_some_and(|b| b.varied.len() == params.len())
        {
            break;
        }
    }
    let plan = best.unwrap_or(GridPlan {
        levels: 1,
        varied: Vec::new(),
        points: 1,
    });
    for param in params.iter().filter(|p| !plan.varied.contains(&p.name)) {
        anyhow::ensure!(
            param.default.is_some(),
            "parameter '{}' must be held fixed for the grid but has no default",
            param.name
        );
    }
    Ok(plan)
}

/// The seed of one experiment: never 0 (0 lets the coordinator choose).
fn experiment_seed(base: u64, strategy_index: usize, repeat: u32) -> u64 {
    base.wrapping_mul(1_000_003)
        .wrapping_add(1000 * strategy_index as u64 + u64::from(repeat) + 1)
        .max(1)
}

/// The experiments of a study, repeat by repeat (so a study cut short stays balanced).
///
/// # Errors
/// When the scenario is unknown, the study has no name, or no strategy or repeat.
pub fn plan(request: &StudyPlanRequest) -> anyhow::Result<Vec<PlannedExperiment>> {
    let base = match &request.base {
        Some(spec) => spec.clone(),
        None => crate::scenario::scenario(&request.scenario).with_context(|| {
            format!(
                "unknown scenario '{}': use one of {}",
                request.scenario,
                crate::scenario::NAMES.join(", ")
            )
        })?,
    };
    anyhow::ensure!(
        !request.name.trim().is_empty(),
        "the study name must not be empty"
    );
    anyhow::ensure!(
        !request.arms.is_empty() && request.repeats > 0,
        "a study needs a strategy and a repeat"
    );
    let mut labels: Vec<String> = request
        .arms
        .iter()
        .map(|a| a.label(request.early_stopping))
        .collect();
    labels.sort();
    labels.dedup();
    anyhow::ensure!(
        labels.len() == request.arms.len(),
        "a study lists each strategy (and early-stopping rule) once"
    );
    let mut planned = Vec::new();
    for repeat in 0..request.repeats {
        for arm in &request.arms {
            let strategy = &arm.strategy;
            let label = arm.label(request.early_stopping);
            let rule = arm.rule.unwrap_or(request.early_stopping);
            let mut spec = base.clone();
            spec.name = experiment_name(&request.scenario, &label, repeat);
            spec.study = request.name.clone();
            spec.set_strategy(strategy.to_pb());
            spec.early_stopping = rule_to_pb(&rule);
            spec.budget_trials = request.budget.unwrap_or(spec.budget_trials).max(1);
            spec.parallelism = request.parallel.unwrap_or(spec.parallelism).max(1);
            spec.seed = experiment_seed(request.seed, strategy.index(), repeat);
            if let Some(workload) = spec.workload.as_mut() {
                workload.max_train_examples =
                    request.max_train.unwrap_or(workload.max_train_examples);
                workload.max_dev_examples = request.max_dev.unwrap_or(workload.max_dev_examples);
            }
            if *strategy == StrategyName::Grid {
                apply_grid(&mut spec)?;
            }
            planned.push(PlannedExperiment {
                arm: label,
                repeat,
                spec,
            });
        }
    }
    Ok(planned)
}

/// Restricts a grid experiment to the grid that fits its budget.
fn apply_grid(spec: &mut pb::ExperimentSpec) -> anyhow::Result<()> {
    let params = spec
        .parameters
        .iter()
        .map(param_spec_from_pb)
        .collect::<Result<Vec<_>, _>>()?;
    let grid = grid_plan(&params, spec.budget_trials)?;
    let workload = spec.workload.get_or_insert_with(pb::Workload::default);
    for param in params.iter().filter(|p| !grid.varied.contains(&p.name)) {
        if let Some(default) = &param.default {
            workload
                .fixed_params
                .insert(param.name.clone(), value_to_pb(default));
        }
    }
    spec.parameters.retain(|p| grid.varied.contains(&p.name));
    spec.grid_levels = grid.levels;
    spec.budget_trials = u32::try_from(grid.points)
        .unwrap_or(u32::MAX)
        .min(spec.budget_trials);
    Ok(())
}

/// Creates the planned experiments, at most `at_once` running at a time, and follows them to the
/// end, printing progress on stderr. `alive` is asked at every poll and ends the drive with its
/// error (a local cluster whose agents all exited would otherwise be waited on forever). Returns
/// the experiment ids.
///
/// # Errors
/// When the coordinator refuses an experiment or cannot be reached, or `alive` fails.
pub async fn drive(
    client: &mut Client,
    planned: Vec<PlannedExperiment>,
    at_once: usize,
    poll: Duration,
    alive: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<String>> {
    let total = planned.len();
    let mut queue = planned.into_iter();
    let mut running: Vec<String> = Vec::new();
    let mut all: Vec<String> = Vec::new();
    let mut done = 0usize;
    let mut last_line = String::new();
    loop {
        while running.len() < at_once.max(1) {
            let Some(next) = queue.next() else { break };
            let name = next.spec.name.clone();
            let experiment = cli::create_experiment(client, next.spec).await?;
            eprintln!("created {} ({name})", experiment.id);
            running.push(experiment.id.clone());
            all.push(experiment.id);
        }
        if running.is_empty() {
            return Ok(all);
        }
        let mut still_running = Vec::with_capacity(running.len());
        let mut progress = Vec::new();
        for id in &running {
            let experiment = cli::get_experiment(client, id).await?;
            if experiment.state() == pb::ExperimentState::Running {
                progress.push(progress_text(&experiment));
                still_running.push(id.clone());
            } else {
                done += 1;
                eprintln!(
                    "finished {} ({}): {}",
                    id,
                    name_of(&experiment),
                    progress_text(&experiment)
                );
            }
        }
        running = still_running;
        let line = format!("[{done}/{total} done] {}", progress.join("  "));
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        alive()?;
        tokio::time::sleep(poll).await;
    }
}

fn name_of(experiment: &pb::Experiment) -> String {
    experiment
        .spec
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

fn progress_text(experiment: &pb::Experiment) -> String {
    let budget = experiment.spec.as_ref().map_or(0, |s| s.budget_trials);
    let best = experiment
        .best_value
        .map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    format!(
        "{} {}/{} best {best}",
        name_of(experiment),
        experiment.trials_succeeded + experiment.trials_failed + experiment.trials_early_stopped,
        budget
    )
}

/// Stops the given experiments (on Ctrl-C), ignoring failures.
pub async fn stop_all(client: &mut Client, ids: &[String]) {
    for id in ids {
        let _ = client
            .stop_experiment(pb::StopExperimentRequest {
                experiment_id: id.clone(),
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(strategies: Vec<StrategyName>) -> StudyPlanRequest {
        StudyPlanRequest {
            name: "s1".into(),
            scenario: "basic-mini".into(),
            base: None,
            arms: strategies
                .into_iter()
                .map(|strategy| StudyArm {
                    strategy,
                    rule: None,
                })
                .collect(),
            early_stopping: Rule::None,
            budget: Some(30),
            repeats: 2,
            parallel: Some(2),
            seed: 7,
            max_train: Some(500),
            max_dev: None,
        }
    }

    fn tuner_params(spec: &pb::ExperimentSpec) -> Vec<ParamSpec> {
        spec.parameters
            .iter()
            .map(|p| param_spec_from_pb(p).expect("valid"))
            .collect()
    }

    #[test]
    fn plans_one_tagged_experiment_a_strategy_and_repeat() {
        let planned = plan(&request(vec![StrategyName::Bo, StrategyName::Random])).expect("plans");
        assert_eq!(planned.len(), 4);
        let names: Vec<&str> = planned.iter().map(|p| p.spec.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "basic-mini/bo/r0",
                "basic-mini/random/r0",
                "basic-mini/bo/r1",
                "basic-mini/random/r1"
            ]
        );
        assert!(planned.iter().all(|p| p.spec.study == "s1"
            && p.spec.budget_trials == 30
            && p.spec.parallelism == 2));
        assert_eq!(planned[1].spec.strategy(), pb::Strategy::Random);
        let mut seeds: Vec<u64> = planned.iter().map(|p| p.spec.seed).collect();
        assert!(seeds.iter().all(|s| *s != 0));
        seeds.dedup();
        assert_eq!(seeds.len(), 4, "every experiment has its own seed");
        assert_eq!(
            planned[0]
                .spec
                .workload
                .as_ref()
                .expect("workload")
                .max_train_examples,
            500
        );
    }

    #[test]
    fn early_stopping_arms_are_labelled_and_share_their_strategy_seeds() {
        let mut req = request(vec![StrategyName::Bo]);
        req.arms.push("bo+median".parse().expect("parses"));
        req.arms.push("random".parse().expect("parses"));
        let planned = plan(&req).expect("plans");
        let names: Vec<&str> = planned.iter().map(|p| p.spec.name.as_str()).collect();
        assert_eq!(
            &names[..3],
            [
                "basic-mini/bo/r0",
                "basic-mini/bo+median/r0",
                "basic-mini/random/r0"
            ]
        );
        assert_eq!(planned[0].spec.early_stopping, None);
        assert!(matches!(
            planned[1].spec.early_stopping.as_ref().and_then(|e| e.rule),
            Some(pb::early_stopping::Rule::Median(_))
        ));
        assert_eq!(planned[0].spec.seed, planned[1].spec.seed, "paired by seed");
        assert_ne!(planned[0].spec.seed, planned[2].spec.seed);
        assert_ne!(planned[0].spec.seed, planned[3].spec.seed, "repeats differ");

        req.early_stopping = Rule::Asha(AshaRule::default());
        let planned = plan(&req).expect("plans");
        assert_eq!(planned[0].spec.name, "basic-mini/bo+asha/r0");
        assert_eq!(planned[2].spec.name, "basic-mini/random+asha/r0");

        req.arms.push("bo+asha".parse().expect("parses"));
        assert!(plan(&req).is_err(), "bo+asha twice");
        assert!("sgd".parse::<StudyArm>().is_err());
        let bad_rule = "bo+hyperband".parse::<StudyArm>().expect_err("refused");
        assert!(bad_rule.to_string().contains("hyperband"), "{bad_rule}");
    }

    #[test]
    fn unknown_scenarios_and_empty_names_are_refused() {
        let mut bad = request(vec![StrategyName::Bo]);
        bad.scenario = "huge".into();
        assert!(
            plan(&bad)
                .expect_err("refused")
                .to_string()
                .contains("basic-mini")
        );
        let mut unnamed = request(vec![StrategyName::Bo]);
        unnamed.name = " ".into();
        assert!(plan(&unnamed).is_err());
    }

    #[test]
    fn the_study_grid_keeps_three_levels_when_the_budget_allows() {
        let basic = tuner_params(&crate::scenario::basic());
        let plan = grid_plan(&basic, 729).expect("plans");
        assert_eq!((plan.levels, plan.points, plan.varied.len()), (3, 729, 6));
        let coarser = grid_plan(&basic, 240).expect("plans");
        assert_eq!(
            (coarser.levels, coarser.points, coarser.varied.len()),
            (2, 64, 6)
        );
    }

    #[test]
    fn a_small_budget_varies_fewer_parameters() {
        let mini = tuner_params(&crate::scenario::basic_mini());
        let plan = grid_plan(&mini, 30).expect("plans");
        assert_eq!((plan.levels, plan.points), (3, 27));
        assert_eq!(plan.varied, ["embed_dim", "learning_rate", "batch_size"]);
    }

    #[test]
    fn grid_experiments_hold_the_other_parameters_at_their_defaults() {
        let planned = plan(&request(vec![StrategyName::Grid])).expect("plans");
        let spec = &planned[0].spec;
        assert_eq!(
            (spec.grid_levels, spec.budget_trials, spec.parameters.len()),
            (3, 27, 3)
        );
        let fixed = &spec.workload.as_ref().expect("workload").fixed_params;
        for name in ["max_grad_norm", "epochs", "dropout", "num_feature_maps"] {
            assert!(fixed.contains_key(name), "{name} is not fixed: {fixed:?}");
        }
    }
}
