//! The scoring rule of the synthetic data: a gold rating per rubric item from counted discourse
//! features (see the module doc of [`super`] for the table).

/// Discourse features of one synthetic transcript, counted by the generator as it writes lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Question-answer exchanges in the transcript (at least one).
    pub exchanges: u32,
    /// Open questions asked by the teacher ("Why do you think ...?").
    pub open_questions: u32,
    /// Closed recall questions asked by the teacher ("What is three times four?").
    pub closed_questions: u32,
    /// Student lines that give a reason ("... because ...").
    pub student_reasons: u32,
    /// Teacher lines that revoice the previous student's idea and ask a follow-up.
    pub uptake: u32,
    /// One-word evaluative feedback lines ("Good.", "Right.").
    pub evaluative: u32,
}

/// Per-exchange weights of each feature for one rubric item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemWeights {
    /// Weight of open questions.
    pub open_questions: f64,
    /// Weight of closed questions.
    pub closed_questions: f64,
    /// Weight of student reasons.
    pub student_reasons: f64,
    /// Weight of teacher uptake.
    pub uptake: f64,
    /// Weight of evaluative feedback.
    pub evaluative: f64,
}

impl ItemWeights {
    /// The weights of a builtin rubric item, or `None` for an item the rule does not know.
    pub fn for_item(item: &str) -> Option<Self> {
        let w = |open_questions, closed_questions, student_reasons, uptake, evaluative| Self {
            open_questions,
            closed_questions,
            student_reasons,
            uptake,
            evaluative,
        };
        match item {
            "instructional_dialogue" => Some(w(2.0, -1.0, 1.0, 2.0, -1.0)),
            "student_reasoning" => Some(w(1.0, -1.0, 3.0, 0.0, 0.0)),
            "teacher_uptake" => Some(w(1.0, 0.0, 0.0, 3.0, -2.0)),
            _ => None,
        }
    }

    fn all(&self) -> [f64; 5] {
        [
            self.open_questions,
            self.closed_questions,
            self.student_reasons,
            self.uptake,
            self.evaluative,
        ]
    }

    /// Raw score of an exchange that has every negative feature once and no positive one.
    pub fn floor(&self) -> f64 {
        self.all().iter().filter(|w| **w < 0.0).sum()
    }

    /// Raw score of an exchange that has every positive feature once and no negative one.
    pub fn ceiling(&self) -> f64 {
        self.all().iter().filter(|w| **w > 0.0).sum()
    }
}

/// Per-exchange raw score: the weighted feature counts divided by the number of exchanges.
pub fn raw_score(features: &Features, weights: &ItemWeights) -> f64 {
    let n = f64::from(features.exchanges.max(1));
    let counts = [
        features.open_questions,
        features.closed_questions,
        features.student_reasons,
        features.uptake,
        features.evaluative,
    ];
    counts
        .iter()
        .zip(weights.all())
        .map(|(&c, w)| f64::from(c) * w)
        .sum::<f64>()
        / n
}

/// Gold rating 1..=7: the raw score mapped linearly from `[floor, ceiling]` onto `[1, 7]`,
/// rounded to the nearest integer (halves away from zero) and clamped.
pub fn gold(features: &Features, weights: &ItemWeights) -> u8 {
    let (lo, hi) = (weights.floor(), weights.ceiling());
    let unit = (raw_score(features, weights) - lo) / (hi - lo);
    (1.0 + 6.0 * unit).round().clamp(1.0, 7.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recitation(n: u32) -> Features {
        Features {
            exchanges: n,
            closed_questions: n,
            evaluative: n,
            ..Default::default()
        }
    }

    fn dialogue(n: u32) -> Features {
        Features {
            exchanges: n,
            open_questions: n,
            student_reasons: n,
            uptake: n,
            ..Default::default()
        }
    }

    #[test]
    fn pure_recitation_is_one_and_pure_dialogue_is_seven() {
        for item in [
            "instructional_dialogue",
            "student_reasoning",
            "teacher_uptake",
        ] {
            let w = ItemWeights::for_item(item).unwrap();
            assert_eq!(gold(&dialogue(6), &w), 7, "{item}");
            assert!(gold(&recitation(6), &w) <= 2, "{item}");
        }
        let w = ItemWeights::for_item("instructional_dialogue").unwrap();
        assert_eq!(gold(&recitation(6), &w), 1);
    }

    #[test]
    fn each_positive_feature_raises_and_each_negative_lowers_the_score() {
        let base = Features {
            exchanges: 6,
            open_questions: 3,
            closed_questions: 3,
            student_reasons: 2,
            uptake: 1,
            evaluative: 3,
        };
        let w = ItemWeights::for_item("instructional_dialogue").unwrap();
        let r0 = raw_score(&base, &w);
        let more = |f: fn(&mut Features)| {
            let mut x = base;
            f(&mut x);
            raw_score(&x, &w)
        };
        assert!(more(|f| f.open_questions += 1) > r0);
        assert!(more(|f| f.student_reasons += 1) > r0);
        assert!(more(|f| f.uptake += 1) > r0);
        assert!(more(|f| f.closed_questions += 1) < r0);
        assert!(more(|f| f.evaluative += 1) < r0);
    }

    #[test]
    fn unknown_items_have_no_rule() {
        assert!(ItemWeights::for_item("classroom_climate").is_none());
    }
}
