//! Summaries of measured records: every figure of the report is a pure function of the records,
//! the probe list and the bootstrap settings, so a reused condition summarises exactly as it
//! did when it was measured.
//!
//! A bias figure is the mean over records of a per-record column (the record's mean |Δ| over the
//! selected wordings, or that minus its control |Δ| for the excess); accuracy figures are
//! correlations and errors over the resampled records. One statistic is evaluated per member
//! (one condition, or the seeds of a mean over seeds) and averaged, and a paired statistic
//! compares each member with the base on the same resample.

use super::bootstrap::{
    gather, mean_at, mean_of_members, reduction_percent, BootstrapOptions, ClusterResamples,
    Estimate,
};
use super::measure::ProbeGroup;
use super::metrics::{exact_match, mean_absolute_error, pearson, spearman};
use super::report::{
    AccuracySummary, BiasSummary, CategoryBias, CategoryReduction, ChangeVsBase, ConditionKind,
    ConditionResult, ProbeInfo, RecordResult, SeedMean, Summary,
};
use debias_guard::guard::Split;
use std::collections::BTreeMap;

/// A per-record bias column: mean |Δ| over `wordings`, minus mean |Δ| over `floor` if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Probe indices averaged.
    pub wordings: Vec<usize>,
    /// Control indices subtracted (the excess over the noise floor).
    pub floor: Option<Vec<usize>>,
}

impl Column {
    /// The column's value per record; `None` when a selection is empty.
    pub fn values(&self, records: &[RecordResult]) -> Option<Vec<f64>> {
        let raw = abs_means(records, &self.wordings)?;
        match &self.floor {
            None => Some(raw),
            Some(floor) => {
                let f = abs_means(records, floor)?;
                Some(raw.iter().zip(&f).map(|(a, b)| a - b).collect())
            }
        }
    }
}

/// Mean |Δ| of each record over the probes `sel` (NaN where a delta is missing).
fn abs_means(records: &[RecordResult], sel: &[usize]) -> Option<Vec<f64>> {
    if sel.is_empty() {
        return None;
    }
    Some(
        records
            .iter()
            .map(|r| {
                sel.iter()
                    .map(|&k| r.deltas.get(k).map_or(f64::NAN, |d| d.abs()))
                    .sum::<f64>()
                    / sel.len() as f64
            })
            .collect(),
    )
}

/// Which wordings and controls each figure averages, from the probe list.
#[derive(Debug, Clone)]
pub struct Selections<'p> {
    probes: &'p [ProbeInfo],
    /// Whether both splits have controls (then a split's floor is its own controls).
    split_controls: bool,
}

impl<'p> Selections<'p> {
    /// Selections over `probes`.
    pub fn new(probes: &'p [ProbeInfo]) -> Self {
        let has = |s: Split| {
            probes
                .iter()
                .any(|p| p.group == ProbeGroup::Control && p.split == s)
        };
        Self {
            probes,
            split_controls: has(Split::Train) && has(Split::Heldout),
        }
    }

    /// Category wordings of `category` (any if `None`) and `split` (both if `None`).
    pub fn wordings(&self, category: Option<&str>, split: Option<Split>) -> Vec<usize> {
        self.indices(|p| {
            p.group != ProbeGroup::Control
                && category.is_none_or(|c| p.category.as_deref() == Some(c))
                && split.is_none_or(|s| p.split == s)
        })
    }

    /// Controls of `split` (all if `None`).
    pub fn controls(&self, split: Option<Split>) -> Vec<usize> {
        self.indices(|p| p.group == ProbeGroup::Control && split.is_none_or(|s| p.split == s))
    }

    /// The noise floor of wordings of `split`: the controls of that split when the catalog
    /// splits its controls, else every control.
    pub fn floor(&self, split: Option<Split>) -> Vec<usize> {
        if self.split_controls {
            self.controls(split)
        } else {
            self.controls(None)
        }
    }

    /// Mean |Δ| of category wordings.
    pub fn raw(&self, category: Option<&str>, split: Option<Split>) -> Column {
        Column {
            wordings: self.wordings(category, split),
            floor: None,
        }
    }

    /// Excess of category wordings over their floor.
    pub fn excess(&self, category: Option<&str>, split: Option<Split>) -> Column {
        Column {
            wordings: self.wordings(category, split),
            floor: Some(self.floor(split)),
        }
    }

    /// Mean |Δ| of controls.
    pub fn control(&self, split: Option<Split>) -> Column {
        Column {
            wordings: self.controls(split),
            floor: None,
        }
    }

    /// Indices of the probes that `keep` selects.
    fn indices(&self, keep: impl Fn(&ProbeInfo) -> bool) -> Vec<usize> {
        (0..self.probes.len())
            .filter(|&k| keep(&self.probes[k]))
            .collect()
    }

    /// Category ids in probe order, each once.
    pub fn categories(&self) -> Vec<&'p str> {
        let mut out: Vec<&str> = Vec::new();
        for c in self.probes.iter().filter_map(|p| p.category.as_deref()) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// Neutral-prompt columns of one member.
struct Neutral {
    expected: Vec<f64>,
    argmax: Vec<f64>,
    mass: Vec<f64>,
    gold: Vec<f64>,
}

impl Neutral {
    fn of(records: &[RecordResult]) -> Self {
        let col = |f: fn(&RecordResult) -> f64| records.iter().map(f).collect();
        Self {
            expected: col(|r| r.neutral_expected),
            argmax: col(|r| r.neutral_argmax),
            mass: col(|r| r.neutral_label_mass),
            gold: col(|r| r.gold),
        }
    }
}

/// A statistic of one member's neutral columns on a resample.
type NeutralStat = fn(&Neutral, &[usize]) -> Option<f64>;

const SPEARMAN_EXPECTED: NeutralStat =
    |n, i| spearman(&gather(&n.expected, i), &gather(&n.gold, i));
const MAE_EXPECTED: NeutralStat =
    |n, i| mean_absolute_error(&gather(&n.expected, i), &gather(&n.gold, i));
const LABEL_MASS: NeutralStat = |n, i| mean_at(&n.mass, i);

/// Summarises `members` (one condition, or the seeds of a mean over seeds: each statistic is
/// the mean of the members' statistics, on every resample), with paired changes against `base`
/// when given. Every member has the records of `resamples`, in the same order.
pub fn summarise(
    sel: &Selections<'_>,
    members: &[&[RecordResult]],
    base: Option<&[RecordResult]>,
    resamples: &ClusterResamples,
) -> Summary {
    let bias_of = |col: &Column| -> Estimate {
        let Some(cols) = members
            .iter()
            .map(|m| col.values(m))
            .collect::<Option<Vec<_>>>()
        else {
            return Estimate::default();
        };
        resamples.estimate(|idx| mean_of_members(cols.iter().map(|c| mean_at(c, idx))))
    };
    let reduction_of = |col: &Column| -> Estimate {
        let Some(b) = base.and_then(|b| col.values(b)) else {
            return Estimate::default();
        };
        let Some(cols) = members
            .iter()
            .map(|m| col.values(m))
            .collect::<Option<Vec<_>>>()
        else {
            return Estimate::default();
        };
        resamples.estimate(|idx| {
            let b = mean_at(&b, idx);
            mean_of_members(cols.iter().map(|c| reduction_percent(b, mean_at(c, idx))))
        })
    };
    let neutral: Vec<Neutral> = members.iter().map(|m| Neutral::of(m)).collect();
    let accuracy = |score: fn(&Neutral) -> &[f64]| {
        let est = |f: fn(&[f64], &[f64]) -> Option<f64>| {
            resamples.estimate(|idx| {
                mean_of_members(
                    neutral
                        .iter()
                        .map(|n| f(&gather(score(n), idx), &gather(&n.gold, idx))),
                )
            })
        };
        AccuracySummary {
            spearman: est(spearman),
            pearson: est(pearson),
            mae: est(mean_absolute_error),
            exact_match: est(exact_match),
        }
    };

    let mut by_category = BTreeMap::new();
    for id in sel.categories() {
        let c = Some(id);
        by_category.insert(
            id.to_string(),
            CategoryBias {
                all: bias_of(&sel.raw(c, None)),
                train: bias_of(&sel.raw(c, Some(Split::Train))),
                heldout: bias_of(&sel.raw(c, Some(Split::Heldout))),
                excess_all: bias_of(&sel.excess(c, None)),
                excess_train: bias_of(&sel.excess(c, Some(Split::Train))),
                excess_heldout: bias_of(&sel.excess(c, Some(Split::Heldout))),
            },
        );
    }
    let bias = BiasSummary {
        train_wordings: bias_of(&sel.raw(None, Some(Split::Train))),
        heldout_wordings: bias_of(&sel.raw(None, Some(Split::Heldout))),
        all_wordings: bias_of(&sel.raw(None, None)),
        controls: bias_of(&sel.control(None)),
        controls_train: bias_of(&sel.control(Some(Split::Train))),
        controls_heldout: bias_of(&sel.control(Some(Split::Heldout))),
        excess_train_wordings: bias_of(&sel.excess(None, Some(Split::Train))),
        excess_heldout_wordings: bias_of(&sel.excess(None, Some(Split::Heldout))),
        excess_all_wordings: bias_of(&sel.excess(None, None)),
        by_category,
    };

    let vs_base = base.map(|b| {
        let base_neutral = Neutral::of(b);
        let difference = |f: NeutralStat| -> Estimate {
            resamples.estimate(|idx| {
                let b = f(&base_neutral, idx);
                mean_of_members(neutral.iter().map(|n| Some(f(n, idx)? - b?)))
            })
        };
        let by_category = sel
            .categories()
            .into_iter()
            .map(|id| {
                let c = Some(id);
                (
                    id.to_string(),
                    CategoryReduction {
                        all: reduction_of(&sel.raw(c, None)),
                        train: reduction_of(&sel.raw(c, Some(Split::Train))),
                        heldout: reduction_of(&sel.raw(c, Some(Split::Heldout))),
                    },
                )
            })
            .collect();
        ChangeVsBase {
            bias_reduction_train: reduction_of(&sel.raw(None, Some(Split::Train))),
            bias_reduction_heldout: reduction_of(&sel.raw(None, Some(Split::Heldout))),
            bias_reduction_all: reduction_of(&sel.raw(None, None)),
            controls_reduction: reduction_of(&sel.control(None)),
            by_category,
            spearman_difference: difference(SPEARMAN_EXPECTED),
            mae_difference: difference(MAE_EXPECTED),
            label_mass_difference: difference(LABEL_MASS),
        }
    });

    Summary {
        bias,
        accuracy_expected: accuracy(|n| &n.expected),
        accuracy_argmax: accuracy(|n| &n.argmax),
        label_mass: resamples
            .estimate(|idx| mean_of_members(neutral.iter().map(|n| LABEL_MASS(n, idx)))),
        vs_base,
    }
}

/// The stem of a seed-suffixed name (`consistency@s2` → `consistency`); `None` otherwise.
pub fn seed_stem(name: &str) -> Option<&str> {
    let (stem, suffix) = name.rsplit_once('@')?;
    let digits = suffix.strip_prefix('s')?;
    (!stem.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(stem)
}

/// Groups of condition indices whose names share a stem and differ by an `@s<N>` suffix (two or
/// more), in order of first appearance.
pub fn seed_groups(names: &[&str]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(stem) = seed_stem(name) {
            match groups.iter_mut().find(|(s, _)| s == stem) {
                Some((_, members)) => members.push(i),
                None => groups.push((stem.to_string(), vec![i])),
            }
        }
    }
    groups.retain(|(_, m)| m.len() >= 2);
    groups
}

/// Fills every condition's summary (changes against the first condition when it is the base)
/// and returns the means over seeds. All conditions hold the same records in the same order.
pub fn summarise_conditions(
    probes: &[ProbeInfo],
    conditions: &mut [ConditionResult],
    options: &BootstrapOptions,
) -> Vec<SeedMean> {
    let Some(first) = conditions.first() else {
        return Vec::new();
    };
    let keys: Vec<&str> = first
        .records
        .iter()
        .map(|r| r.transcript.as_str())
        .collect();
    let resamples = ClusterResamples::new(&keys, options);
    let sel = Selections::new(probes);
    let base: Option<Vec<RecordResult>> =
        (first.condition == ConditionKind::Base).then(|| first.records.clone());
    for (i, c) in conditions.iter_mut().enumerate() {
        let against = if i == 0 { None } else { base.as_deref() };
        c.summary = summarise(&sel, &[&c.records], against, &resamples);
    }
    let names: Vec<&str> = conditions.iter().map(|c| c.name.as_str()).collect();
    seed_groups(&names)
        .into_iter()
        .map(|(stem, members)| {
            let records: Vec<&[RecordResult]> = members
                .iter()
                .map(|&i| conditions[i].records.as_slice())
                .collect();
            SeedMean {
                stem,
                members: members
                    .iter()
                    .map(|&i| conditions[i].name.clone())
                    .collect(),
                summary: summarise(&sel, &records, base.as_deref(), &resamples),
            }
        })
        .collect()
}
