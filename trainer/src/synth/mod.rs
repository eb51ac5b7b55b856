//! Deterministic synthetic NCTE-format transcripts with a documented scoring rule (`synth`).
//!
//! Each transcript is a short lesson in one subject (math, science, reading, social studies)
//! made of 5–9 question–answer exchanges, assembled from the line pools of [`pools`]. A latent
//! quality `q ~ U(0, 1)` drawn per transcript sets how often an exchange is *dialogic* (open
//! question, a student who reasons "because ...", a teacher who revoices the idea and asks a
//! follow-up, a classmate who builds on it) rather than *recitation* (closed recall question,
//! one-word answer, evaluative feedback such as "Good."). The generator counts the features as it
//! writes lines ([`Features`]) and derives one gold rating per rubric item with [`rule::gold`]:
//!
//! | item                     | open q. | closed q. | reasons | uptake | evaluative |
//! |--------------------------|---------|-----------|---------|--------|------------|
//! | `instructional_dialogue` | +2      | −1        | +1      | +2     | −1         |
//! | `student_reasoning`      | +1      | −1        | +3      | 0      | 0          |
//! | `teacher_uptake`         | +1      | 0         | 0       | +3     | −2         |
//!
//! raw = Σ weight × count / exchanges; gold = round(1 + 6 × (raw − floor) / (ceiling − floor))
//! clamped to 1..=7, where floor (ceiling) is the sum of the negative (positive) weights.
//!
//! Output: `train.jsonl` and `test.jsonl`, one [`Example`] per transcript and item. The split is
//! by transcript (all items of a transcript land in the same file) and transcripts are unique.
//! The same seed, options and crate version give byte-identical files (`StdRng` from the seed;
//! the lock file pins `rand`).

pub mod pools;
pub mod rule;

use crate::data::{write_jsonl, Example};
use crate::error::{Error, Result};
use pools::{Subject, Topic, SUBJECTS};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
pub use rule::{Features, ItemWeights};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Most transcripts one run may generate (bounds memory).
pub const MAX_TRANSCRIPTS: usize = 1_000_000;
/// Fewest exchanges in a transcript.
pub const MIN_EXCHANGES: u32 = 5;
/// Most exchanges in a transcript.
pub const MAX_EXCHANGES: u32 = 9;
/// Tries to draw a transcript not seen before, before giving up.
const MAX_DRAWS_PER_TRANSCRIPT: usize = 64;

/// Options of the `synth` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output directory (created if missing); receives train.jsonl and test.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of distinct transcripts to generate.
    #[arg(long, default_value_t = 400)]
    pub transcripts: usize,
    /// Fraction of transcripts that go to test.jsonl (0 <= F < 1).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Rubric items to rate, comma-separated (ids of the builtin rubric).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "instructional_dialogue,student_reasoning,teacher_uptake"
    )]
    pub items: Vec<String>,
}

/// One generated transcript with the features its lines carry.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthTranscript {
    /// Transcript id (`syn{seed}-{index}`).
    pub id: String,
    /// Subject of the lesson.
    pub subject: &'static str,
    /// `TEACHER:` / `STUDENT:` lines joined by `\n`.
    pub text: String,
    /// Counted discourse features.
    pub features: Features,
}

/// A generated data set, split by transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthDataset {
    /// Training records.
    pub train: Vec<Example>,
    /// Held-out records (no transcript in common with `train`).
    pub test: Vec<Example>,
}

/// Checks the options and returns the rule of each requested item.
fn validate(args: &SynthArgs) -> Result<Vec<(String, ItemWeights)>> {
    if args.transcripts == 0 || args.transcripts > MAX_TRANSCRIPTS {
        return Err(Error::Config(format!(
            "--transcripts {} is outside 1..={MAX_TRANSCRIPTS}",
            args.transcripts
        )));
    }
    if !(args.test_fraction.is_finite() && (0.0..1.0).contains(&args.test_fraction)) {
        return Err(Error::Config(format!(
            "--test-fraction {} is outside [0, 1)",
            args.test_fraction
        )));
    }
    if args.items.is_empty() {
        return Err(Error::Config("--items is empty".into()));
    }
    let rubric = debias_guard::Rubric::builtin();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for item in &args.items {
        if !seen.insert(item.as_str()) {
            return Err(Error::Config(format!("--items repeats `{item}`")));
        }
        let known = rubric.items.iter().any(|i| &i.id == item);
        match ItemWeights::for_item(item) {
            Some(w) if known => out.push((item.clone(), w)),
            _ => {
                return Err(Error::Config(format!(
                    "--items: `{item}` is not an item of the builtin rubric with a synthetic rule"
                )))
            }
        }
    }
    Ok(out)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn pick_line(rng: &mut StdRng, lines: &[&'static str]) -> &'static str {
    lines[rng.random_range(0..lines.len())]
}

/// Writes one transcript: a subject and topic, then exchanges whose kind follows the quality.
pub fn generate_transcript(rng: &mut StdRng, id: String) -> SynthTranscript {
    let subject: &Subject = pick(rng, SUBJECTS);
    let topic: &Topic = pick(rng, subject.topics);
    let quality: f64 = rng.random_range(0.0..1.0);
    let exchanges = rng.random_range(MIN_EXCHANGES..=MAX_EXCHANGES);
    let mut f = Features {
        exchanges,
        ..Default::default()
    };
    let mut lines: Vec<String> = Vec::new();
    let teacher = |lines: &mut Vec<String>, s: &str| lines.push(format!("TEACHER: {s}"));
    let student = |lines: &mut Vec<String>, s: &str| lines.push(format!("STUDENT: {s}"));
    for _ in 0..exchanges {
        if rng.random_bool(0.15) {
            teacher(&mut lines, pick_line(rng, pools::PROCEDURAL));
        }
        if rng.random_bool(quality) {
            teacher(&mut lines, pick_line(rng, topic.open));
            f.open_questions += 1;
            let idea = pick(rng, topic.claims);
            if rng.random_bool(0.3 + 0.7 * quality) {
                student(
                    &mut lines,
                    &format!("I think {} because {}.", idea.claim, idea.reason),
                );
                f.student_reasons += 1;
            } else {
                student(&mut lines, &format!("Maybe {}?", idea.claim));
            }
            if rng.random_bool(quality) {
                let opening = pick(rng, pools::UPTAKE_OPENINGS);
                let follow = pick(rng, pools::UPTAKE_FOLLOW_UPS);
                teacher(&mut lines, &format!("{opening} {}. {follow}", idea.claim));
                f.uptake += 1;
                if rng.random_bool(quality) {
                    let other = pick(rng, topic.claims);
                    let opening = pick(rng, pools::BUILD_ON_OPENINGS);
                    student(&mut lines, &format!("{opening} {}.", other.reason));
                    f.student_reasons += 1;
                }
            } else if rng.random_bool(0.7) {
                teacher(&mut lines, pick_line(rng, pools::EVALUATIVE));
                f.evaluative += 1;
            }
        } else {
            let (question, answer) = pick(rng, topic.closed);
            teacher(&mut lines, question);
            student(&mut lines, answer);
            f.closed_questions += 1;
            if rng.random_bool(0.85) {
                teacher(&mut lines, pick_line(rng, pools::EVALUATIVE));
                f.evaluative += 1;
            }
        }
    }
    SynthTranscript {
        id,
        subject: subject.name,
        text: lines.join("\n"),
        features: f,
    }
}

/// Generates `args.transcripts` distinct transcripts and splits them into train and test.
pub fn generate(args: &SynthArgs) -> Result<SynthDataset> {
    let items = validate(args)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut seen = HashSet::new();
    let mut transcripts = Vec::with_capacity(args.transcripts);
    for index in 0..args.transcripts {
        let id = format!("syn{}-{index:06}", args.seed);
        let mut drawn = None;
        for _ in 0..MAX_DRAWS_PER_TRANSCRIPT {
            let t = generate_transcript(&mut rng, id.clone());
            if seen.insert(t.text.clone()) {
                drawn = Some(t);
                break;
            }
        }
        let t = drawn.ok_or_else(|| {
            Error::Config(format!(
                "the line pools ran out of distinct transcripts after {index}; ask for fewer"
            ))
        })?;
        transcripts.push(t);
    }
    let n = transcripts.len();
    let n_test = if args.test_fraction > 0.0 && n >= 2 {
        ((n as f64 * args.test_fraction).round() as usize).clamp(1, n - 1)
    } else {
        0
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut is_test = vec![false; n];
    for &i in &order[..n_test] {
        is_test[i] = true;
    }
    let mut data = SynthDataset {
        train: Vec::new(),
        test: Vec::new(),
    };
    for (t, test) in transcripts.iter().zip(is_test) {
        let target = if test {
            &mut data.test
        } else {
            &mut data.train
        };
        for (item, weights) in &items {
            target.push(Example {
                id: format!("{}/{item}", t.id),
                transcript: t.text.clone(),
                item: item.clone(),
                gold: rule::gold(&t.features, weights),
            });
        }
    }
    Ok(data)
}

/// Writes `train.jsonl` and `test.jsonl` into `dir` (created if missing); an empty test split
/// still gets an empty `test.jsonl`.
pub fn write_dataset(dir: &Path, data: &SynthDataset) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_jsonl(&dir.join("train.jsonl"), &data.train)?;
    write_jsonl(&dir.join("test.jsonl"), &data.test)
}

/// Runs the `synth` subcommand.
pub fn run(args: &SynthArgs) -> Result<()> {
    let data = generate(args)?;
    write_dataset(&args.out, &data)?;
    eprintln!(
        "wrote {} training and {} test records to {}",
        data.train.len(),
        data.test.len(),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(seed: u64, transcripts: usize) -> SynthArgs {
        SynthArgs {
            out: PathBuf::new(),
            seed,
            transcripts,
            test_fraction: 0.25,
            items: vec![
                "instructional_dialogue".into(),
                "student_reasoning".into(),
                "teacher_uptake".into(),
            ],
        }
    }

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dg-synth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn same_seed_gives_identical_files_and_another_seed_differs() {
        let (a, b, c) = (tmp_dir("a"), tmp_dir("b"), tmp_dir("c"));
        write_dataset(&a, &generate(&args(7, 60)).unwrap()).unwrap();
        write_dataset(&b, &generate(&args(7, 60)).unwrap()).unwrap();
        write_dataset(&c, &generate(&args(8, 60)).unwrap()).unwrap();
        for f in ["train.jsonl", "test.jsonl"] {
            let x = std::fs::read(a.join(f)).unwrap();
            assert_eq!(x, std::fs::read(b.join(f)).unwrap(), "{f}");
            assert_ne!(x, std::fs::read(c.join(f)).unwrap(), "{f}");
        }
        let back = crate::data::load_examples(&a.join("train.jsonl")).unwrap();
        assert_eq!(back, generate(&args(7, 60)).unwrap().train);
    }

    #[test]
    fn split_is_by_transcript_and_sized_by_the_fraction() {
        let data = generate(&args(3, 80)).unwrap();
        let train: HashSet<&str> = data.train.iter().map(|e| e.transcript.as_str()).collect();
        let test: HashSet<&str> = data.test.iter().map(|e| e.transcript.as_str()).collect();
        assert!(train.is_disjoint(&test));
        assert_eq!(train.len() + test.len(), 80);
        assert_eq!(test.len(), 20);
        assert_eq!(data.train.len(), 3 * 60);
        for e in data.train.iter().chain(&data.test) {
            e.validate().unwrap();
            assert!(e
                .transcript
                .lines()
                .all(|l| l.starts_with("TEACHER: ") || l.starts_with("STUDENT: ")));
        }
    }

    fn spearman(x: &[f64], y: &[f64]) -> f64 {
        fn ranks(v: &[f64]) -> Vec<f64> {
            let mut idx: Vec<usize> = (0..v.len()).collect();
            idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
            let mut r = vec![0.0; v.len()];
            let mut i = 0;
            while i < idx.len() {
                let mut j = i;
                while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                    j += 1;
                }
                for k in i..=j {
                    r[idx[k]] = (i + j) as f64 / 2.0;
                }
                i = j + 1;
            }
            r
        }
        let (rx, ry) = (ranks(x), ranks(y));
        let n = x.len() as f64;
        let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
        let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
        let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
        let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
        cov / (vx * vy).sqrt()
    }

    /// Counts the features from the text alone, so the test checks what a reader of the file sees.
    fn text_features(text: &str) -> (f64, f64, f64) {
        let lines: Vec<&str> = text.lines().collect();
        let n = lines.len() as f64;
        let reasons = lines
            .iter()
            .filter(|l| l.starts_with("STUDENT:") && l.contains("because"))
            .count() as f64;
        let uptake = lines
            .iter()
            .filter(|l| pools::UPTAKE_OPENINGS.iter().any(|o| l.contains(o)))
            .count() as f64;
        let evaluative = lines
            .iter()
            .filter(|l| {
                pools::EVALUATIVE
                    .iter()
                    .any(|e| l.ends_with(&format!(": {e}")))
            })
            .count() as f64;
        (reasons / n, uptake / n, evaluative / n)
    }

    #[test]
    fn gold_follows_the_features_seen_in_the_text() {
        let data = generate(&args(11, 300)).unwrap();
        let by_item = |item: &str| -> Vec<&Example> {
            data.train.iter().filter(|e| e.item == item).collect()
        };
        let check = |item: &str, feature: fn((f64, f64, f64)) -> f64, min_rho: f64| {
            let ex = by_item(item);
            let x: Vec<f64> = ex
                .iter()
                .map(|e| feature(text_features(&e.transcript)))
                .collect();
            let y: Vec<f64> = ex.iter().map(|e| f64::from(e.gold)).collect();
            let rho = spearman(&x, &y);
            assert!(rho > min_rho, "{item}: spearman {rho}");
        };
        check("student_reasoning", |f| f.0, 0.8);
        check("teacher_uptake", |f| f.1, 0.8);
        check("instructional_dialogue", |f| -f.2, 0.6);
        let golds: HashSet<u8> = data.train.iter().map(|e| e.gold).collect();
        assert!(golds.len() >= 6, "ratings cover the scale: {golds:?}");
    }

    #[test]
    fn bad_options_are_typed_errors() {
        let mut a = args(0, 0);
        assert!(matches!(generate(&a), Err(Error::Config(_))));
        a.transcripts = 10;
        a.test_fraction = 1.0;
        assert!(matches!(generate(&a), Err(Error::Config(_))));
        a.test_fraction = 0.1;
        a.items = vec!["classroom_climate".into()];
        assert!(matches!(generate(&a), Err(Error::Config(_))));
        a.items = vec!["teacher_uptake".into(), "teacher_uptake".into()];
        assert!(matches!(generate(&a), Err(Error::Config(_))));
    }
}
