//! `tunectl ask-tell`: runs the tuner in-process and speaks JSON lines on stdin/stdout, so the
//! optimizer can be benchmarked against other libraries (issue 2 §6).
//!
//! Requests and replies, one line each:
//! - `{"suggest": q}` → `{"suggestions": [{"id": "<string>", "params": {...}}, ...]}` with
//!   exactly `q` entries (grid search gives fewer once the grid is exhausted);
//! - `{"observe": [{"id": "<id>", "params": {...}, "value": 1.23}, ...]}` → `{"ok": true}`; the
//!   batch is checked whole before any of it is applied; `params` may be left out for an id this
//!   session suggested, and an unknown id with `params` is taken as an outside result;
//! - `{"stop": true}` or the end of input ends the session; anything else gets
//!   `{"error": "message"}` and the session goes on.
//!
//! Suggested points that are not observed yet are pending: BO models them with the running
//! trials (q-LogEI by default, or as constant-liar fantasies) and never suggests them again. Each
//! `suggest` call's seed is derived from `--seed` and the number of points suggested so far, and
//! each GP fit starts from the previous one's hyperparameters, so a session is reproducible from
//! its requests.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tuner::space::{Assignment, ParamSpec, Space};
use tuner::{BatchStrategy, Direction, Observation, Strategy, SuggestConfig};

/// The largest batch one request may ask for.
const MAX_BATCH: u64 = 10_000;

/// The search strategy flag.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyArg {
    /// Bayesian optimization.
    Bo,
    /// Uniform random search.
    Random,
    /// Grid search (`--grid-levels` levels a numeric parameter).
    Grid,
}

/// The batch strategy flag.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchArg {
    /// Constant liar with the smallest observed value.
    ClMin,
    /// Constant liar with the mean observed value.
    ClMean,
    /// Constant liar with the largest observed value.
    ClMax,
    /// Monte Carlo q-LogEI (the default).
    McQei,
}

/// Options of `tunectl ask-tell`.
#[derive(clap::Args, Debug, Clone)]
pub struct AskTellOptions {
    /// The search space: `{"name": ..., "direction": "minimize"|"maximize", "params": [...]}`.
    #[arg(long)]
    pub space: PathBuf,
    /// The seed every suggestion derives from.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The search strategy.
    #[arg(long, value_enum, default_value = "bo")]
    pub strategy: StrategyArg,
    /// How BO fills batches; default: mc-qei (q-LogEI, with at most 16 pending points modelled
    /// jointly and older ones as best-value lies).
    #[arg(long, value_enum)]
    pub batch: Option<BatchArg>,
    /// Grid levels a numeric parameter.
    #[arg(long, default_value_t = 3)]
    pub grid_levels: usize,
    /// Results collected from the initial design before BO starts (0: automatic).
    #[arg(long, default_value_t = 0)]
    pub initial_trials: usize,
    /// The evaluations the caller will make, when known (0: unknown): the automatic initial
    /// design then takes at most a quarter of them.
    #[arg(long, default_value_t = 0)]
    pub budget: usize,
    /// The objective is noise-free: BO pins the GP's noise at its floor instead of fitting it.
    #[arg(long)]
    pub deterministic: bool,
    /// The most results BO fits its GP to: beyond it, the best quarter of this many and a seeded
    /// draw from the rest (at least 8).
    #[arg(long, default_value_t = tuner::DEFAULT_MAX_MODEL_POINTS)]
    pub max_model_points: usize,
}

/// The space file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    direction: Direction,
    params: Vec<ParamSpec>,
}

/// One result in an `observe` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObserveItem {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    params: Option<Assignment>,
    value: f64,
}

/// The session: the space, the results so far and the pending suggestions.
struct Session {
    space: Space,
    config: SuggestConfig,
    seed: u64,
    observations: Vec<Observation>,
    pending: BTreeMap<String, Assignment>,
    suggested: u64,
    /// The last GP fit's hyperparameters: the next fit starts from them, as the coordinator's
    /// rounds do (`tuner::fit_warm`).
    warm: Option<Vec<f64>>,
}

/// What a request line asks for.
enum Reply {
    Line(Json),
    Stop,
}

impl Session {
    fn new(opts: &AskTellOptions, file: SpaceFile) -> anyhow::Result<Session> {
        let space = Space::new(file.params).context("invalid search space")?;
        let strategy = match opts.strategy {
            StrategyArg::Bo => Strategy::Bo,
            StrategyArg::Random => Strategy::Random,
            StrategyArg::Grid => Strategy::Grid {
                levels: opts.grid_levels,
            },
        };
        let batch = match opts.batch {
            None => BatchStrategy::McQei,
            Some(BatchArg::ClMin) => BatchStrategy::ClMin,
            Some(BatchArg::ClMean) => BatchStrategy::ClMean,
            Some(BatchArg::ClMax) => BatchStrategy::ClMax,
            Some(BatchArg::McQei) => BatchStrategy::McQei,
        };
        let config = SuggestConfig {
            strategy,
            direction: file.direction,
            batch,
            initial_trials: opts.initial_trials,
            budget: opts.budget,
            deterministic: opts.deterministic,
            max_model_points: opts.max_model_points,
            ..SuggestConfig::default()
        };
        config.validate().context("invalid tuner settings")?;
        Ok(Session {
            space,
            config,
            seed: opts.seed,
            observations: Vec::new(),
            pending: BTreeMap::new(),
            suggested: 0,
            warm: None,
        })
    }

    fn handle(&mut self, line: &str) -> Reply {
        let request: Json = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return error(format!("request is not valid JSON: {e}")),
        };
        let Some(object) = request.as_object().filter(|o| o.len() == 1) else {
            return error("a request is an object with one key: suggest, observe or stop");
        };
        match object.iter().next() {
            Some((key, value)) if key == "suggest" => self.suggest(value),
            Some((key, value)) if key == "observe" => self.observe(value),
            Some((key, Json::Bool(true))) if key == "stop" => Reply::Stop,
            Some((key, _)) => error(format!(
                "unknown request '{key}' (expected suggest, observe or stop)"
            )),
            None => error("empty request"),
        }
    }

    fn suggest(&mut self, value: &Json) -> Reply {
        let Some(q) = value.as_u64().filter(|q| *q <= MAX_BATCH) else {
            return error(format!("'suggest' takes an integer from 0 to {MAX_BATCH}"));
        };
        let pending: Vec<Assignment> = self.pending.values().cloned().collect();
        let mut mix = self.seed ^ self.suggested.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let call_seed = tuner::rng::splitmix64(&mut mix);
        let fitted = tuner::fit_warm(
            &self.space,
            &self.observations,
            &self.config,
            call_seed,
            self.warm.as_deref(),
        );
        let proposed = fitted.and_then(|model| {
            if let Some(theta) = model.hyperparameters() {
                self.warm = Some(theta);
            }
            tuner::propose(&model, &pending, q as usize, &self.config, call_seed)
        });
        let candidates = match proposed {
            Ok(c) => c,
            Err(e) => return error(format!("suggest failed: {e}")),
        };
        let mut suggestions = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let id = self.suggested.to_string();
            self.suggested += 1;
            suggestions.push(json!({"id": id, "params": candidate.params}));
            self.pending.insert(id, candidate.params);
        }
        Reply::Line(json!({ "suggestions": suggestions }))
    }

    fn observe(&mut self, value: &Json) -> Reply {
        let items: Vec<ObserveItem> = match serde_json::from_value(value.clone()) {
            Ok(items) => items,
            Err(e) => {
                return error(format!(
                    "'observe' takes a list of {{id, params, value}}: {e}"
                ));
            }
        };
        let mut accepted = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match self.check_item(item) {
                Ok(entry) => accepted.push(entry),
                Err(message) => return error(format!("observation {index}: {message}")),
            }
        }
        for (id, observation) in accepted {
            if let Some(id) = id {
                self.pending.remove(&id);
            }
            self.observations.push(observation);
        }
        Reply::Line(json!({"ok": true}))
    }

    fn check_item(&self, item: ObserveItem) -> Result<(Option<String>, Observation), String> {
        if !item.value.is_finite() {
            return Err(format!("value {} is not finite", item.value));
        }
        let known = item.id.as_ref().and_then(|id| self.pending.get(id));
        let params = match (item.params, known) {
            (Some(params), _) => params,
            (None, Some(params)) => params.clone(),
            (None, None) => return Err("no params and no pending suggestion with this id".into()),
        };
        let params = self.space.normalize(&params).map_err(|e| e.to_string())?;
        Ok((
            item.id,
            Observation {
                params,
                value: item.value,
            },
        ))
    }
}

fn error(message: impl Into<String>) -> Reply {
    Reply::Line(json!({ "error": message.into() }))
}

/// Runs a session: reads requests from `input` and writes one reply line per request line to
/// `output` until `{"stop": true}` or the end of input.
///
/// # Errors
/// An unreadable or invalid space file, or an I/O error on `input` or `output`.
pub fn run(
    opts: &AskTellOptions,
    input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&opts.space)
        .with_context(|| format!("failed to read space file {}", opts.space.display()))?;
    let file: SpaceFile = serde_json::from_str(&text)
        .with_context(|| format!("failed to parse space file {}", opts.space.display()))?;
    let mut session = Session::new(opts, file)?;
    for line in input.lines() {
        let line = line.context("failed to read a request line")?;
        match session.handle(line.trim()) {
            Reply::Stop => break,
            Reply::Line(reply) => {
                writeln!(output, "{reply}").context("failed to write a reply")?;
                output.flush().context("failed to flush a reply")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(space_json: &str, strategy: StrategyArg) -> (tempfile::TempDir, AskTellOptions) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("space.json");
        std::fs::write(&path, space_json).expect("write space");
        let opts = AskTellOptions {
            space: path,
            seed: 7,
            strategy,
            batch: None,
            grid_levels: 3,
            initial_trials: 0,
            budget: 0,
            deterministic: false,
            max_model_points: tuner::DEFAULT_MAX_MODEL_POINTS,
        };
        (dir, opts)
    }

    const SPACE: &str = r#"{"name": "t", "direction": "minimize", "params": [
        {"name": "lr", "type": "float", "low": 1e-08, "high": 1.0, "log": true},
        {"name": "n", "type": "int", "low": 1, "high": 8, "log": false},
        {"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]}]}"#;

    fn session_output(opts: &AskTellOptions, input: &str) -> Vec<Json> {
        let mut out = Vec::new();
        run(opts, input.as_bytes(), &mut out).expect("session runs");
        String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("reply is JSON"))
            .collect()
    }

    #[test]
    fn one_reply_per_request_and_errors_for_garbage() {
        let (_dir, opts) = options(SPACE, StrategyArg::Bo);
        let replies = session_output(
            &opts,
            "{\"suggest\": 3}\nnot json\n{\"bogus\": 1}\n{\"suggest\": -1}\n\n{\"stop\": true}\n{\"suggest\": 1}\n",
        );
        assert_eq!(replies.len(), 5);
        assert_eq!(replies[0]["suggestions"].as_array().expect("list").len(), 3);
        for reply in &replies[1..] {
            assert!(reply["error"].is_string(), "{reply}");
        }
    }

    #[test]
    fn a_bo_loop_observes_and_never_repeats() {
        let (_dir, opts) = options(SPACE, StrategyArg::Bo);
        let mut session =
            Session::new(&opts, serde_json::from_str(SPACE).expect("space")).expect("session");
        let mut seen = Vec::new();
        for round in 0..5 {
            let Reply::Line(reply) = session.handle("{\"suggest\": 3}") else {
                panic!("suggest does not stop")
            };
            let suggestions = reply["suggestions"]
                .as_array()
                .expect("suggestions")
                .clone();
            assert_eq!(suggestions.len(), 3, "round {round}: {reply}");
            let mut observed = Vec::new();
            for s in &suggestions {
                assert!(!seen.contains(&s["params"]), "repeated {s}");
                seen.push(s["params"].clone());
                let lr = s["params"]["lr"].as_f64().expect("lr");
                let n = s["params"]["n"].as_i64().expect("n") as f64;
                observed.push(
                    json!({"id": s["id"], "params": s["params"], "value": lr.ln().abs() + n}),
                );
            }
            // Leave the last one pending in even rounds.
            if round % 2 == 0 {
                observed.pop();
            }
            let Reply::Line(ok) = session.handle(&json!({ "observe": observed }).to_string())
            else {
                panic!("observe does not stop")
            };
            assert_eq!(ok, json!({"ok": true}));
        }
        assert_eq!(session.pending.len(), 3);
        assert_eq!(session.observations.len(), 12);
    }

    /// Results near the ends of the `f64` range are ordinary results: BO's standardization
    /// once overflowed on them and every suggestion failed ("kernel matrix is not positive
    /// definite").
    #[test]
    fn results_near_the_ends_of_the_f64_range_still_get_bo_suggestions() {
        let (_dir, opts) = options(SPACE, StrategyArg::Bo);
        let mut session =
            Session::new(&opts, serde_json::from_str(SPACE).expect("space")).expect("session");
        let observed: Vec<Json> = (0..8)
            .map(|k| {
                let value = match k {
                    0 => 1.7e308,
                    1 => -1.7e308,
                    _ => 1e300 * f64::from(k),
                };
                let params = json!({
                    "lr": 10f64.powi(-(k + 1)),
                    "n": k % 8 + 1,
                    "opt": if k % 2 == 0 { "adam" } else { "sgd" },
                });
                json!({"params": params, "value": value})
            })
            .collect();
        let Reply::Line(ok) = session.handle(&json!({ "observe": observed }).to_string()) else {
            panic!("observe does not stop")
        };
        assert_eq!(ok, json!({"ok": true}));
        let Reply::Line(reply) = session.handle("{\"suggest\": 2}") else {
            panic!("suggest does not stop")
        };
        let suggestions = reply["suggestions"].as_array().map_or(0, Vec::len);
        assert_eq!(suggestions, 2, "{reply}");
    }

    #[test]
    fn observe_is_checked_whole() {
        let (_dir, opts) = options(SPACE, StrategyArg::Random);
        let mut session =
            Session::new(&opts, serde_json::from_str(SPACE).expect("space")).expect("session");
        let Reply::Line(reply) = session.handle("{\"suggest\": 1}") else {
            panic!("no stop")
        };
        let id = reply["suggestions"][0]["id"].clone();
        let bad = json!({"observe": [{"id": id, "value": 1.0}, {"id": "x", "params": {"lr": 2.0, "n": 1, "opt": "adam"}, "value": 1.0}]});
        let Reply::Line(reply) = session.handle(&bad.to_string()) else {
            panic!("no stop")
        };
        assert!(
            reply["error"]
                .as_str()
                .expect("error")
                .contains("observation 1"),
            "{reply}"
        );
        assert!(session.observations.is_empty());
        let good = json!({"observe": [{"id": id, "value": 1.0}]});
        let Reply::Line(reply) = session.handle(&good.to_string()) else {
            panic!("no stop")
        };
        assert_eq!(reply, json!({"ok": true}));
        assert!(session.pending.is_empty());
    }

    #[test]
    fn grid_runs_out() {
        let space = r#"{"params": [{"name": "n", "type": "int", "low": 1, "high": 2}]}"#;
        let (_dir, opts) = options(space, StrategyArg::Grid);
        let replies = session_output(&opts, "{\"suggest\": 5}\n{\"suggest\": 5}\n");
        assert_eq!(replies[0]["suggestions"].as_array().expect("list").len(), 2);
        assert_eq!(replies[1]["suggestions"].as_array().expect("list").len(), 0);
    }

    #[test]
    fn bad_space_is_an_error() {
        let (_dir, opts) = options(
            r#"{"params": [{"name": "n", "type": "int", "low": 3, "high": 2}]}"#,
            StrategyArg::Bo,
        );
        let err = run(&opts, "".as_bytes(), Vec::new()).expect_err("invalid space");
        assert!(format!("{err:#}").contains("'n'"), "{err:#}");
    }

    #[test]
    fn budget_and_determinism_reach_the_tuner() {
        let (_dir, mut opts) = options(SPACE, StrategyArg::Bo);
        opts.budget = 8;
        opts.deterministic = true;
        let file: SpaceFile = serde_json::from_str(SPACE).expect("parses");
        let session = Session::new(&opts, file).expect("valid");
        assert_eq!(session.config.budget, 8);
        assert!(session.config.deterministic);
        // Three parameters: max(5, d + 1) = 5 design points without a budget, 2 with 8 trials.
        assert_eq!(session.config.effective_initial_trials(3), 2);
    }

    #[test]
    fn the_model_cap_reaches_the_tuner_and_a_tiny_one_is_refused() {
        let (_dir, mut opts) = options(SPACE, StrategyArg::Bo);
        let file = || serde_json::from_str::<SpaceFile>(SPACE).expect("parses");
        let session = Session::new(&opts, file()).expect("valid");
        assert_eq!(
            session.config.max_model_points,
            tuner::DEFAULT_MAX_MODEL_POINTS
        );
        opts.max_model_points = 200;
        let session = Session::new(&opts, file()).expect("valid");
        assert_eq!(session.config.max_model_points, 200);
        opts.max_model_points = 3;
        let Err(err) = Session::new(&opts, file()) else {
            panic!("a cap of 3 is below the tuner's minimum");
        };
        assert!(format!("{err:#}").contains("max_model_points"), "{err:#}");
    }

    #[test]
    fn same_seed_same_session() {
        let (_dir, opts) = options(SPACE, StrategyArg::Bo);
        let input = "{\"suggest\": 4}\n{\"suggest\": 2}\n";
        assert_eq!(session_output(&opts, input), session_output(&opts, input));
    }
}
