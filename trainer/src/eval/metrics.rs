//! Accuracy statistics of predicted scores against gold ratings: Pearson and Spearman
//! correlation, mean absolute error and exact match. Pure functions over slices.

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// Pearson correlation of two equally long samples; `None` when there are fewer than two pairs,
/// the lengths differ, or either sample is constant (the correlation is undefined).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let (mx, my) = (mean(x)?, mean(y)?);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// 1-based ranks with ties given the mean of the ranks they span (`[10, 20, 20]` → `[1, 2.5, 2.5]`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold equal values: ranks start+1 ..= end.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman rank correlation: Pearson correlation of the average ranks (handles ties).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Mean absolute difference; `None` when empty or of different lengths.
pub fn mean_absolute_error(predicted: &[f64], gold: &[f64]) -> Option<f64> {
    if predicted.len() != gold.len() {
        return None;
    }
    let diffs: Vec<f64> = predicted
        .iter()
        .zip(gold)
        .map(|(p, g)| (p - g).abs())
        .collect();
    mean(&diffs)
}

/// Share of predictions that round to the gold value (0–1); `None` when empty or of different
/// lengths. Predictions are rounded half away from zero, so 4.5 counts as 5.
pub fn exact_match(predicted: &[f64], gold: &[f64]) -> Option<f64> {
    if predicted.len() != gold.len() {
        return None;
    }
    let hits: Vec<f64> = predicted
        .iter()
        .zip(gold)
        .map(|(p, g)| if p.round() == g.round() { 1.0 } else { 0.0 })
        .collect();
    mean(&hits)
}

/// Relative change of `new` against `base` in percent (`(new − base) / |base| × 100`); `None`
/// when the base is zero or either value is missing.
pub fn percent_change(base: Option<f64>, new: Option<f64>) -> Option<f64> {
    let (b, n) = (base?, new?);
    if b == 0.0 || !b.is_finite() || !n.is_finite() {
        return None;
    }
    Some((n - b) / b.abs() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(average_ranks(&[10.0, 20.0, 20.0]), vec![1.0, 2.5, 2.5]);
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 3.0, 0.0]),
            vec![4.0, 2.0, 4.0, 4.0, 1.0]
        );
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(pearson(&[1.0], &[2.0]), None);
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0, 2.0], &[2.0]), None);
        assert_eq!(mean_absolute_error(&[], &[]), None);
        assert_eq!(percent_change(Some(0.0), Some(1.0)), None);
    }

    #[test]
    fn percent_change_uses_the_base_magnitude() {
        assert!(close(percent_change(Some(2.0), Some(0.5)), -75.0));
        assert!(close(percent_change(Some(-0.2), Some(0.1)), 150.0));
    }
}
