//! Which spurious contexts each training example gets: the catalog's `train` category
//! wordings, all of them or K drawn per example with a seed that depends only on the run seed
//! and the example id (so a resumed run draws the same contexts).

use debias_guard::guard::{Probe, ProbeCatalog, ProbeKind, SplitSelection};
use rand::SeedableRng;

/// The category wordings of the `train` split, in catalog order (controls are left out: they
/// are not social contexts and serve only as the audit's noise floor).
pub fn train_contexts(catalog: &ProbeCatalog) -> Vec<Probe> {
    catalog
        .probes(SplitSelection::Train)
        .into_iter()
        .filter(|p| matches!(p.kind, ProbeKind::Category { .. }))
        .collect()
}

/// FNV-1a hash of a string: a seed component that is stable across Rust versions and runs.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The seed of one example: the run seed mixed with the example id.
pub fn example_seed(run_seed: u64, example_id: &str) -> u64 {
    run_seed ^ stable_hash(example_id)
}

/// Indices (ascending, into `contexts`) of the contexts of one example: all when `per_example`
/// is `None` or at least the number of contexts, else `per_example` drawn without replacement.
pub fn pick_contexts(
    total: usize,
    per_example: Option<usize>,
    run_seed: u64,
    example_id: &str,
) -> Vec<usize> {
    match per_example {
        Some(k) if k < total => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(example_seed(run_seed, example_id));
            let mut picked = rand::seq::index::sample(&mut rng, total, k).into_vec();
            picked.sort_unstable();
            picked
        }
        _ => (0..total).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_contexts_are_category_wordings_of_the_train_split() {
        let contexts = train_contexts(&ProbeCatalog::builtin());
        assert!(!contexts.is_empty());
        assert!(contexts
            .iter()
            .all(|p| p.split == debias_guard::guard::Split::Train
                && matches!(p.kind, ProbeKind::Category { .. })));
    }

    #[test]
    fn picks_are_stable_sorted_and_distinct() {
        let a = pick_contexts(42, Some(3), 7, "ex-1");
        assert_eq!(a, pick_contexts(42, Some(3), 7, "ex-1"));
        assert_eq!(a.len(), 3);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&i| i < 42));
        assert_eq!(pick_contexts(5, Some(9), 7, "ex-1"), vec![0, 1, 2, 3, 4]);
        assert_eq!(pick_contexts(4, None, 7, "ex-1"), vec![0, 1, 2, 3]);
    }

    #[test]
    fn fnv_matches_its_reference_value() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
