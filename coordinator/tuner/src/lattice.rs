//! The discrete coordinates of a space, as the acquisition optimizer sees them: which
//! coordinates of `[0,1]^d` are integers or categoricals, and the encoded values they may take.
//!
//! With [`crate::SuggestConfig::mixed_search`], integers and categoricals live on their values
//! (bin centres, see [`crate::space`]) during the whole acquisition search instead of being
//! searched as continuous and rounded at the end: candidates are snapped to the lattice, L-BFGS
//! holds the discrete coordinates fixed, and a categorical's neighbours (all its other choices)
//! are searched exhaustively ([`crate::optimize`]). A space without integers or categoricals has
//! no discrete coordinates, and every operation here leaves its points alone.
//!
//! Measured and not kept (docs/BENCHMARKS.md, "Mixed spaces"): searching an integer's
//! neighbours (one and two steps, and larger moves in its coordinate) during refinement, and
//! local perturbations that move a discrete coordinate to a random neighbouring value.

use crate::space::{ParamKind, ParamSpec, Space, Value};

/// The discrete structure of a space's coordinates.
#[derive(Debug, Clone)]
pub struct Lattice {
    dim: usize,
    /// The discrete parameters with their coordinate index.
    discrete: Vec<(usize, ParamSpec)>,
}

impl Lattice {
    /// The lattice of `space`'s integer and categorical parameters.
    pub fn new(space: &Space) -> Lattice {
        let discrete = space
            .params()
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p.kind, ParamKind::Float { .. }))
            .map(|(k, p)| (k, p.clone()))
            .collect();
        Lattice {
            dim: space.dim(),
            discrete,
        }
    }

    /// A lattice of `dim` continuous coordinates (no discrete ones).
    pub fn continuous(dim: usize) -> Lattice {
        Lattice {
            dim,
            discrete: Vec::new(),
        }
    }

    /// The number of coordinates.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether every coordinate is continuous.
    pub fn is_continuous(&self) -> bool {
        self.discrete.is_empty()
    }

    /// Whether some coordinate is continuous.
    pub fn has_continuous(&self) -> bool {
        self.discrete.len() < self.dim
    }

    /// The indices of the discrete coordinates.
    pub fn discrete_dims(&self) -> impl Iterator<Item = usize> + '_ {
        self.discrete.iter().map(|(k, _)| *k)
    }

    /// Moves every discrete coordinate of `x` to the encoding of the value it decodes to.
    pub fn snap(&self, x: &mut [f64]) {
        for (k, spec) in &self.discrete {
            x[*k] = spec.encode_value(&spec.decode_value(x[*k]));
        }
    }

    /// For each categorical coordinate, its index and the encodings of every choice other than
    /// the one `x` holds there, in the order of the choices.
    pub fn categorical_moves(&self, x: &[f64]) -> Vec<(usize, Vec<f64>)> {
        self.discrete
            .iter()
            .filter_map(|(k, spec)| match (&spec.kind, spec.decode_value(x[*k])) {
                (ParamKind::Categorical { choices }, Value::Categorical(current)) => {
                    let others = choices
                        .iter()
                        .filter(|choice| **choice != current)
                        .map(|choice| spec.encode_value(&Value::Categorical(choice.clone())))
                        .collect();
                    Some((*k, others))
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn space() -> Space {
        let params = serde_json::from_str(
            r#"[{"name":"lr","type":"float","low":1e-8,"high":1,"log":true},
                {"name":"layers","type":"int","low":1,"high":8},
                {"name":"width","type":"int","low":16,"high":512,"log":true},
                {"name":"opt","type":"categorical","choices":["sgd","adam","rmsprop"]}]"#,
        )
        .expect("parses");
        Space::new(params).expect("valid")
    }

    #[test]
    fn snapping_matches_the_space() {
        let space = space();
        let lattice = Lattice::new(&space);
        assert_eq!(lattice.discrete_dims().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(lattice.has_continuous() && !lattice.is_continuous());
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let mut x = rng.point(4);
            let snapped = space.snap(&x);
            lattice.snap(&mut x);
            assert_eq!(&x[1..], &snapped[1..]);
        }
        let mut continuous = vec![0.25, 0.5];
        Lattice::continuous(2).snap(&mut continuous);
        assert_eq!(continuous, vec![0.25, 0.5]);
    }

    #[test]
    fn categorical_moves_are_the_other_choices() {
        let space = space();
        let lattice = Lattice::new(&space);
        let at = space.snap(&[0.5, 0.5, 0.5, 0.5]);
        let moves = lattice.categorical_moves(&at);
        assert_eq!(moves.len(), 1);
        let (k, others) = &moves[0];
        assert_eq!(*k, 3);
        let decoded: Vec<Value> = others
            .iter()
            .map(|v| space.decode(&[0.5, 0.5, 0.5, *v])["opt"].clone())
            .collect();
        assert_eq!(
            decoded,
            vec![
                Value::Categorical("sgd".into()),
                Value::Categorical("rmsprop".into())
            ]
        );
    }
}
