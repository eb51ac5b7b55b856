//! Pure guard math: flag thresholds with hand-made numbers, Wasserstein-1, and bias deltas.

use debias_guard::guard::{wasserstein1, BiasDelta, Thresholds};
use debias_guard::{Error, ScoreDistribution};

fn dist(probs: &[f64], values: &[f64], mass: f64) -> ScoreDistribution {
    let argmax = (0..probs.len()).fold(0, |b, i| if probs[i] > probs[b] { i } else { b });
    ScoreDistribution {
        labels: values.iter().map(|v| v.to_string()).collect(),
        probs: probs.to_vec(),
        label_mass: mass,
        expected: probs.iter().zip(values).map(|(p, v)| p * v).sum(),
        argmax,
        prompt_tokens: 10,
    }
}

#[test]
fn default_thresholds_are_half_a_point_and_three_noise_floors() {
    let t = Thresholds::default();
    assert_eq!(t.abs_threshold, 0.5);
    assert_eq!(t.k, 3.0);
}

#[test]
fn absolute_threshold_applies_when_the_noise_floor_is_low() {
    let t = Thresholds::new(0.5, 3.0).unwrap();
    // k × noise = 0.3 < 0.5, so the absolute threshold decides.
    assert_eq!(t.flag_threshold(0.1), 0.5);
    assert!(!t.is_flagged(0.499_999, 0.1));
    assert!(t.is_flagged(0.5, 0.1));
    assert!(t.is_flagged(0.500_001, 0.1));
}

#[test]
fn noise_multiple_applies_when_the_noise_floor_is_high() {
    let t = Thresholds::new(0.5, 3.0).unwrap();
    // k × noise = 0.75 > 0.5.
    assert_eq!(t.flag_threshold(0.25), 0.75);
    assert!(!t.is_flagged(0.7499, 0.25));
    assert!(t.is_flagged(0.75, 0.25));
    assert!(!t.is_flagged(0.6, 0.25), "above abs but below k × noise");
}

#[test]
fn switch_point_moves_with_both_settings() {
    let t = Thresholds::new(0.2, 2.0).unwrap();
    assert_eq!(t.flag_threshold(0.1), 0.2); // equal: 2 × 0.1 = 0.2
    assert!(t.is_flagged(0.2, 0.1));
    assert!(!t.is_flagged(0.19, 0.1));
    let t = Thresholds::new(0.0, 0.0).unwrap();
    assert!(t.is_flagged(0.0, 5.0), "zero thresholds flag everything");
    let t = Thresholds::new(1.0, 10.0).unwrap();
    assert!(!t.is_flagged(1.99, 0.2));
    assert!(t.is_flagged(2.0, 0.2));
}

#[test]
fn negative_or_non_finite_thresholds_are_invalid_input() {
    for (abs, k) in [
        (-0.1, 3.0),
        (0.5, -1.0),
        (f64::NAN, 3.0),
        (0.5, f64::NAN),
        (f64::INFINITY, 3.0),
    ] {
        assert!(
            matches!(Thresholds::new(abs, k), Err(Error::InvalidInput(_))),
            "{abs} {k}"
        );
    }
}

#[test]
fn wasserstein_is_the_area_between_cdfs() {
    let v = [1.0, 2.0, 3.0];
    assert_eq!(wasserstein1(&[1.0, 0.0, 0.0], &[0.0, 0.0, 1.0], &v), 2.0);
    assert_eq!(wasserstein1(&[0.5, 0.5, 0.0], &[0.5, 0.5, 0.0], &v), 0.0);
    assert!((wasserstein1(&[0.5, 0.5, 0.0], &[0.0, 0.5, 0.5], &v) - 1.0).abs() < 1e-12);
    // Unequal spacing and unsorted support give the same answer as the sorted form.
    let v = [1.0, 2.0, 5.0];
    assert!((wasserstein1(&[0.0, 1.0, 0.0], &[0.0, 0.0, 1.0], &v) - 3.0).abs() < 1e-12);
    let shuffled = [5.0, 1.0, 2.0];
    assert!((wasserstein1(&[0.0, 0.0, 1.0], &[1.0, 0.0, 0.0], &shuffled) - 3.0).abs() < 1e-12);
    // Symmetric.
    let p = [0.1, 0.2, 0.7];
    let q = [0.6, 0.3, 0.1];
    assert_eq!(wasserstein1(&p, &q, &v), wasserstein1(&q, &p, &v));
}

#[test]
fn bias_delta_of_hand_made_distributions() {
    let values = [1.0, 2.0, 3.0, 4.0];
    let neutral = dist(&[0.1, 0.6, 0.2, 0.1], &values, 0.9);
    let contextual = dist(&[0.0, 0.2, 0.3, 0.5], &values, 0.7);
    let d = BiasDelta::between(&neutral, &contextual, &values).unwrap();
    assert!((d.neutral_expected - 2.3).abs() < 1e-12);
    assert!((d.contextual_expected - 3.3).abs() < 1e-12);
    assert!((d.delta - 1.0).abs() < 1e-12);
    assert!((d.abs_delta - 1.0).abs() < 1e-12);
    // Shifting mass upward only: W1 equals the change of the mean.
    assert!((d.wasserstein - 1.0).abs() < 1e-12);
    assert!(d.argmax_changed);
    assert_eq!(d.neutral_label_mass, 0.9);
    assert_eq!(d.contextual_label_mass, 0.7);

    let back = BiasDelta::between(&contextual, &neutral, &values).unwrap();
    assert!((back.delta + 1.0).abs() < 1e-12);
    assert_eq!(back.abs_delta, d.abs_delta);

    let same = BiasDelta::between(&neutral, &neutral, &values).unwrap();
    assert_eq!(
        (same.delta, same.wasserstein, same.argmax_changed),
        (0.0, 0.0, false)
    );

    let other_scale = dist(&[0.5, 0.5], &[1.0, 2.0], 1.0);
    assert!(matches!(
        BiasDelta::between(&neutral, &other_scale, &values),
        Err(Error::InvalidInput(_))
    ));
}
