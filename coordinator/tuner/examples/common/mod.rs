//! Shared by the examples: Hartmann-6 (Dixon and Szegő, 1978, with the constants of Surjanovic
//! and Bingham's "Virtual Library of Simulation Experiments"; its minimum is about -3.32237), and
//! numbers read from the environment ([`env_number`]), and random results of Hartmann-6
//! ([`hartmann6_observations`]).

/// The number in environment variable `name`, if it is set.
///
/// # Errors
/// When it is set but does not parse, naming the variable and its value.
pub fn env_number<T>(name: &str) -> Result<Option<T>, Box<dyn std::error::Error>>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + 'static,
{
    std::env::var(name)
        .ok()
        .map(|s| s.parse().map_err(|e| format!("{name}={s:?}: {e}").into()))
        .transpose()
}

const A: [[f64; 6]; 4] = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
];
const P: [[f64; 6]; 4] = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
];
const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];

/// `n` results of Hartmann-6 at uniform random points of `space` (a 6-D unit cube).
#[allow(dead_code, reason = "not every example draws results")]
pub fn hartmann6_observations(
    space: &tuner::space::Space,
    rng: &mut tuner::rng::Rng,
    n: usize,
) -> Vec<tuner::Observation> {
    (0..n)
        .map(|_| {
            let x = rng.point(6);
            tuner::Observation {
                params: space.decode(&x),
                value: hartmann6(&x),
            }
        })
        .collect()
}

/// Hartmann-6 on [0, 1]^6.
pub fn hartmann6(x: &[f64]) -> f64 {
    -(0..4)
        .map(|i| {
            ALPHA[i]
                * (-(0..6)
                    .map(|j| A[i][j] * (x[j] - P[i][j]).powi(2))
                    .sum::<f64>())
                .exp()
        })
        .sum::<f64>()
}
