//! Accuracy statistics against values computed by hand.

use debias_guard_trainer::eval::metrics::{
    average_ranks, exact_match, mean_absolute_error, pearson, percent_change, spearman,
};

fn assert_close(got: Option<f64>, want: f64) {
    let got = got.expect("defined");
    assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
}

#[test]
fn pearson_matches_hand_computation() {
    // dx = -2,-1,0,1,2; dy = -2,0,1,0,1: Sxy = 6, Sxx = 10, Syy = 6, r = 6 / sqrt(60).
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    let y = [2.0, 4.0, 5.0, 4.0, 5.0];
    assert_close(pearson(&x, &y), 6.0 / 60f64.sqrt());
    assert_close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
    assert_close(pearson(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
}

#[test]
fn spearman_averages_tied_ranks() {
    // y ranks with ties: 2 -> 1, 4 -> 2.5 (twice), 5 -> 4.5 (twice).
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    let y = [2.0, 4.0, 5.0, 4.0, 5.0];
    assert_eq!(average_ranks(&y), vec![1.0, 2.5, 4.5, 2.5, 4.5]);
    // dx = -2,-1,0,1,2; dy = -2,-0.5,1.5,-0.5,1.5: Sxy = 7, Sxx = 10, Syy = 9.
    assert_close(spearman(&x, &y), 7.0 / 90f64.sqrt());
    // Monotone but not linear: Spearman is exactly 1, Pearson is not.
    let z = [1.0, 8.0, 27.0, 64.0, 125.0];
    assert_close(spearman(&x, &z), 1.0);
    assert!(pearson(&x, &z).unwrap() < 0.99);
    // A constant side has no rank order.
    assert_eq!(spearman(&x, &[3.0; 5]), None);
}

#[test]
fn error_and_exact_match() {
    assert_close(mean_absolute_error(&[1.0, 2.0, 3.0], &[2.0, 2.0, 5.0]), 1.0);
    // 1.4 -> 1 (hit), 2.6 -> 3 (miss), 3.5 -> 4 (hit).
    assert_close(exact_match(&[1.4, 2.6, 3.5], &[1.0, 2.0, 4.0]), 2.0 / 3.0);
    assert_eq!(exact_match(&[1.0], &[1.0, 2.0]), None);
    assert_close(percent_change(Some(0.5), Some(0.1)), -80.0);
}
