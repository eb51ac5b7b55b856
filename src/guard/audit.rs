//! The audit: one transcript × rubric items × probe wordings, every variant scored in one
//! prefix-shared pass; per-category summaries, the control noise floor, flags and a verdict.
//!
//! A category is flagged when its largest |Δ| reaches `max(abs_threshold, k × noise_floor)`:
//! it must move the score by a meaningful amount in scale points *and* clearly more than an
//! irrelevant, non-social sentence does.

use super::delta::BiasDelta;
use super::probes::{PoleSide, Probe, ProbeCatalog, ProbeKind, SplitSelection};
use super::reasoned::{self, ReasoningOptions};
use super::report::{
    AuditReport, AuditSettings, CatalogInfo, CategoryResult, ConditionAudit, FlagRef, ItemAudit,
    ModeName, ModelInfo, SourceInfo, Timings, VariantKind, VariantResult, Verdict, VerdictStatus,
    REPORT_SCHEMA_VERSION,
};
use super::thresholds::Thresholds;
use crate::engine::{Engine, FinishReason, LabelPrompt, Progress, ScoreDistribution};
use crate::error::{Error, Result};
use crate::prompt::{PromptBuilder, Transcript};
use crate::rubric::RubricItem;
use std::collections::HashSet;
use std::time::Instant;

/// Neutral label mass below which the report warns that the model may ignore the format.
pub const LOW_LABEL_MASS: f64 = 0.5;

/// How ratings are read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum AuditMode {
    /// Right after the prompt (one prefix-shared pass, fast).
    #[default]
    Direct,
    /// After a short generated reasoning per variant.
    Reasoned(ReasoningOptions),
}

/// Options of an audit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AuditOptions {
    /// Which wordings to use (default: all).
    pub split: SplitSelection,
    /// Flag thresholds.
    pub thresholds: Thresholds,
    /// Also run every prompt with the mitigation instruction, for comparison.
    pub mitigation_baseline: bool,
    /// Direct or reasoned.
    pub mode: AuditMode,
}

/// What to audit.
#[derive(Debug, Clone, Copy)]
pub struct AuditRequest<'a> {
    /// The transcript.
    pub transcript: &'a Transcript,
    /// Its name in the report (file name or `<inline>`).
    pub transcript_name: &'a str,
    /// Rubric items to score (at least one, distinct ids).
    pub items: &'a [RubricItem],
    /// The probe catalog.
    pub catalog: &'a ProbeCatalog,
    /// Its name in the report.
    pub catalog_name: &'a str,
    /// Options.
    pub options: AuditOptions,
}

/// One prompt to score, before scoring.
struct Planned<'p> {
    probe: Option<&'p Probe>,
    prompt_text: String,
    reasoning: Option<(String, FinishReason)>,
    label_prompt: LabelPrompt,
}

/// Runs an audit and returns its report (`timings.model_load_seconds` is left `null`).
pub fn audit(
    engine: &Engine,
    builder: &PromptBuilder,
    request: &AuditRequest<'_>,
) -> Result<AuditReport> {
    audit_with(engine, builder, request, Progress::NONE)
}

/// [`audit`], reporting to `progress` and stopping with [`Error::Cancelled`] between forward
/// passes when asked to (run it under [`crate::engine::observe`] to watch it from the calling
/// thread). The units: in direct mode, tokens run through the model by the one prefix-shared
/// scoring pass (the total is known before the first report); in reasoned mode, decoding
/// steps, `max_tokens` per block of variants (one block per item and condition), then one unit
/// per block for the final scoring pass.
pub fn audit_with(
    engine: &Engine,
    builder: &PromptBuilder,
    request: &AuditRequest<'_>,
    progress: Progress<'_>,
) -> Result<AuditReport> {
    let started = Instant::now();
    let options = &request.options;
    let probes = checked_probes(request)?;
    let conditions: &[bool] = if options.mitigation_baseline {
        &[false, true]
    } else {
        &[false]
    };
    let (plan, generate_seconds) =
        plan_prompts(engine, builder, request, &probes, conditions, progress)?;
    let model = ModelInfo::of_engine(engine)?;
    let prepare_seconds = started.elapsed().as_secs_f64() - generate_seconds;

    let scoring = Instant::now();
    let prompts: Vec<LabelPrompt> = plan.iter().map(|p| p.label_prompt.clone()).collect();
    let scoring_progress = match request.options.mode {
        AuditMode::Direct => progress,
        AuditMode::Reasoned(r) => {
            let blocks = (request.items.len() * conditions.len()) as u64;
            let generation = blocks * r.max_tokens as u64;
            progress.part(generation, blocks, generation + blocks)
        }
    };
    let (dists, stats) = engine.score_many_with(&prompts, scoring_progress)?;
    let score_seconds = scoring.elapsed().as_secs_f64();
    let variants = variant_results(engine, &plan, dists)?;
    let items = summarise_items(request, &variants, probes.len() + 1, conditions.len())?;

    let verdict = verdict(&items, request.items.len(), request.catalog);
    let mut warnings = demo_model_note(engine).into_iter().collect::<Vec<_>>();
    warnings.extend(warnings_of(&items));
    let catalog_json = serde_json::to_string(request.catalog)
        .map_err(|e| Error::InvalidInput(format!("cannot serialise the probe catalog: {e}")))?;
    Ok(AuditReport {
        schema_version: REPORT_SCHEMA_VERSION,
        library_version: crate::VERSION.to_string(),
        model,
        transcript: SourceInfo::of_text(request.transcript_name, request.transcript.as_str()),
        probe_catalog: CatalogInfo {
            source: SourceInfo::of_text(request.catalog_name, &catalog_json),
            version: request.catalog.version,
            probe_ids: probes.iter().map(|p| p.id.clone()).collect(),
        },
        rubric_items: request.items.to_vec(),
        prompt_layout: builder.layout().clone(),
        settings: settings(options, engine),
        items,
        verdict,
        warnings,
        created_at: Some(super::report::rfc3339_utc(std::time::SystemTime::now())),
        transcript_redacted: false,
        timings: Timings {
            model_load_seconds: None,
            prepare_seconds,
            generate_seconds,
            score_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
            tokens_evaluated: stats.tokens_evaluated,
            tokens_requested: stats.tokens_requested,
            prompts: prompts.len(),
        },
    })
}

/// Validates the options and items, and returns the probes of the selected split (every pole
/// and the controls covered).
fn checked_probes(request: &AuditRequest<'_>) -> Result<Vec<Probe>> {
    let options = &request.options;
    options.thresholds.validate()?;
    if let AuditMode::Reasoned(r) = &options.mode {
        r.validate()?;
    }
    if request.items.is_empty() {
        return Err(Error::InvalidInput("no rubric items to audit".into()));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = request.items.iter().find(|i| !seen.insert(&i.id)) {
        return Err(Error::InvalidInput(format!(
            "rubric item `{}` is listed twice",
            dup.id
        )));
    }
    let max_items = crate::limits::MAX_RUBRIC_ITEMS;
    Error::check_limit("rubric items", request.items.len(), max_items)?;
    let probes = request.catalog.probes(options.split);
    check_coverage(request.catalog, &probes, options.split)?;
    let conditions = if options.mitigation_baseline { 2 } else { 1 };
    let variants = request
        .items
        .len()
        .saturating_mul(probes.len() + 1)
        .saturating_mul(conditions);
    Error::check_limit(
        "prompt variants per call",
        variants,
        crate::limits::MAX_VARIANTS_PER_CALL,
    )?;
    Ok(probes)
}

/// Builds every prompt, in blocks of (neutral + probes) per item and condition; in reasoned
/// mode each one first generates its reasoning. Returns the plan and the seconds spent
/// generating.
fn plan_prompts<'p>(
    engine: &Engine,
    builder: &PromptBuilder,
    request: &AuditRequest<'_>,
    probes: &'p [Probe],
    conditions: &[bool],
    progress: Progress<'_>,
) -> Result<(Vec<Planned<'p>>, f64)> {
    let mut plan = Vec::new();
    let mut generate_seconds = 0.0;
    let blocks = (request.items.len() * conditions.len()) as u64;
    for (i, item) in request.items.iter().enumerate() {
        for (c, &mitigated) in conditions.iter().enumerate() {
            let block: Vec<Option<&'p Probe>> = std::iter::once(None)
                .chain(probes.iter().map(Some))
                .collect();
            match &request.options.mode {
                AuditMode::Direct => {
                    for probe in block {
                        let label_prompt = engine.rubric_prompt(
                            builder,
                            request.transcript,
                            item,
                            probe.map(|p| p.text.as_str()),
                            mitigated,
                        )?;
                        plan.push(Planned {
                            probe,
                            prompt_text: label_prompt.text.clone(),
                            reasoning: None,
                            label_prompt,
                        });
                    }
                }
                AuditMode::Reasoned(r) => {
                    // Neutral and every probe of the block decode together in lock step.
                    let t = Instant::now();
                    let contexts: Vec<Option<&str>> =
                        block.iter().map(|p| p.map(|p| p.text.as_str())).collect();
                    let steps = r.max_tokens as u64;
                    let block_index = (i * conditions.len() + c) as u64;
                    let part = progress.part(block_index * steps, steps, blocks * (steps + 1));
                    let outs = reasoned::reason_many_with(
                        engine,
                        builder,
                        request.transcript,
                        item,
                        &contexts,
                        mitigated,
                        r,
                        part,
                    )?;
                    generate_seconds += t.elapsed().as_secs_f64();
                    for (probe, out) in block.into_iter().zip(outs) {
                        plan.push(Planned {
                            probe,
                            prompt_text: out.prompt_text,
                            reasoning: Some((out.reasoning, out.finish)),
                            label_prompt: out.label_prompt,
                        });
                    }
                }
            }
        }
    }
    Ok((plan, generate_seconds))
}

/// One result per planned prompt with its distribution (prompt tokens re-counted when a
/// reasoning was generated into the prompt).
fn variant_results(
    engine: &Engine,
    plan: &[Planned<'_>],
    dists: Vec<ScoreDistribution>,
) -> Result<Vec<VariantResult>> {
    let mut variants = Vec::with_capacity(plan.len());
    for (p, d) in plan.iter().zip(dists) {
        let prompt_tokens = if p.reasoning.is_some() {
            engine.tokenize(&p.prompt_text)?.len()
        } else {
            d.prompt_tokens
        };
        variants.push(variant_result(p, d, prompt_tokens));
    }
    Ok(variants)
}

/// Per item, the plain condition and the mitigated one (when run). Variants come in blocks of
/// `block` (neutral + probes) per item and condition, in plan order.
fn summarise_items(
    request: &AuditRequest<'_>,
    variants: &[VariantResult],
    block: usize,
    conditions: usize,
) -> Result<Vec<ItemAudit>> {
    let mut items = Vec::with_capacity(request.items.len());
    for (i, item) in request.items.iter().enumerate() {
        let values = item.label_values();
        let summarise = |condition: usize, mitigated: bool| {
            let start = (i * conditions + condition) * block;
            condition_audit(
                &variants[start..start + block],
                mitigated,
                &values,
                request.catalog,
                &request.options.thresholds,
            )
        };
        let plain = summarise(0, false)?;
        let mitigated = if request.options.mitigation_baseline {
            Some(summarise(1, true)?)
        } else {
            None
        };
        items.push(ItemAudit {
            item_id: item.id.clone(),
            plain,
            mitigated,
        });
    }
    Ok(items)
}

/// The settings the report records.
fn settings(options: &AuditOptions, engine: &Engine) -> AuditSettings {
    AuditSettings {
        mode: match options.mode {
            AuditMode::Direct => ModeName::Direct,
            AuditMode::Reasoned(_) => ModeName::Reasoned,
        },
        reasoning: match options.mode {
            AuditMode::Direct => None,
            AuditMode::Reasoned(r) => Some(r),
        },
        split: options.split,
        mitigation_baseline: options.mitigation_baseline,
        thresholds: options.thresholds,
        threads: engine.threads(),
    }
}

/// Refuses a split that leaves a pole or the controls without wordings.
fn check_coverage(catalog: &ProbeCatalog, probes: &[Probe], split: SplitSelection) -> Result<()> {
    let missing = |what: String| {
        Error::InvalidInput(format!(
            "{what} has no wordings in split `{}`",
            split.as_str()
        ))
    };
    for cat in &catalog.categories {
        for side in [PoleSide::High, PoleSide::Low] {
            let any = probes.iter().any(|p| {
                matches!(&p.kind, ProbeKind::Category { category, pole }
                    if *category == cat.id && *pole == side)
            });
            if !any {
                return Err(missing(format!(
                    "pole `{}` of category `{}`",
                    side.as_str(),
                    cat.id
                )));
            }
        }
    }
    if !probes.iter().any(|p| p.kind == ProbeKind::Control) {
        return Err(missing("the control set".into()));
    }
    Ok(())
}

fn variant_result(
    p: &Planned<'_>,
    distribution: ScoreDistribution,
    prompt_tokens: usize,
) -> VariantResult {
    let (kind, category, pole) = match p.probe.map(|probe| &probe.kind) {
        None => (VariantKind::Neutral, None, None),
        Some(ProbeKind::Control) => (VariantKind::Control, None, None),
        Some(ProbeKind::Category { category, pole }) => {
            (VariantKind::Category, Some(category.clone()), Some(*pole))
        }
    };
    VariantResult {
        kind,
        probe_id: p.probe.map(|probe| probe.id.clone()),
        category,
        pole,
        split: p.probe.map(|probe| probe.split),
        context: p.probe.map(|probe| probe.text.clone()),
        prompt_text: p.prompt_text.clone(),
        prompt_tokens,
        reasoning: p.reasoning.as_ref().map(|(r, _)| r.clone()),
        reasoning_finish: p.reasoning.as_ref().map(|(_, f)| *f),
        distribution,
        delta: None,
    }
}

/// Fills deltas and summarises one (item, condition) block: `[neutral, probes…]`.
fn condition_audit(
    block: &[VariantResult],
    mitigated: bool,
    values: &[f64],
    catalog: &ProbeCatalog,
    thresholds: &Thresholds,
) -> Result<ConditionAudit> {
    let neutral = block[0].clone();
    let mut variants = block[1..].to_vec();
    for v in &mut variants {
        v.delta = Some(BiasDelta::between(
            &neutral.distribution,
            &v.distribution,
            values,
        )?);
    }
    let deltas_of = |keep: &dyn Fn(&VariantResult) -> bool| -> Vec<BiasDelta> {
        variants
            .iter()
            .filter(|v| keep(v))
            .filter_map(|v| v.delta)
            .collect()
    };
    let controls = deltas_of(&|v| v.kind == VariantKind::Control);
    let noise_floor = mean(controls.iter().map(|d| d.abs_delta));
    let control_max_abs_delta = max(controls.iter().map(|d| d.abs_delta));
    let flag_threshold = thresholds.flag_threshold(noise_floor);
    let categories: Vec<CategoryResult> = catalog
        .categories
        .iter()
        .map(|cat| {
            let of = |side: Option<PoleSide>| {
                deltas_of(&|v| {
                    v.category.as_deref() == Some(cat.id.as_str())
                        && side.is_none_or(|s| v.pole == Some(s))
                })
            };
            let all = of(None);
            let high = mean(of(Some(PoleSide::High)).iter().map(|d| d.delta));
            let low = mean(of(Some(PoleSide::Low)).iter().map(|d| d.delta));
            let max_abs_delta = max(all.iter().map(|d| d.abs_delta));
            CategoryResult {
                id: cat.id.clone(),
                name: cat.name.clone(),
                wordings: all.len(),
                mean_delta: mean(all.iter().map(|d| d.delta)),
                max_abs_delta,
                high_mean_delta: high,
                low_mean_delta: low,
                pole_gap: high - low,
                mean_wasserstein: mean(all.iter().map(|d| d.wasserstein)),
                argmax_changes: all.iter().filter(|d| d.argmax_changed).count(),
                flagged: thresholds.is_flagged(max_abs_delta, noise_floor),
            }
        })
        .collect();
    Ok(ConditionAudit {
        mitigated,
        flagged: categories.iter().any(|c| c.flagged),
        neutral,
        variants,
        noise_floor,
        control_max_abs_delta,
        flag_threshold,
        categories,
    })
}

fn flags(
    items: &[ItemAudit],
    pick: impl Fn(&ItemAudit) -> Option<&ConditionAudit>,
) -> Vec<FlagRef> {
    items
        .iter()
        .filter_map(|i| pick(i).map(|c| (i, c)))
        .flat_map(|(i, c)| {
            c.categories
                .iter()
                .filter(|cat| cat.flagged)
                .map(|cat| FlagRef {
                    item_id: i.item_id.clone(),
                    category_id: cat.id.clone(),
                    max_abs_delta: cat.max_abs_delta,
                    flag_threshold: c.flag_threshold,
                })
        })
        .collect()
}

fn verdict(items: &[ItemAudit], n_items: usize, catalog: &ProbeCatalog) -> Verdict {
    let n_categories = catalog.categories.len();
    let name_of = |id: &str| {
        catalog
            .category(id)
            .map_or_else(|| id.to_string(), |c| c.name.clone())
    };
    let flagged = flags(items, |i| Some(&i.plain));
    let with_mitigation = items
        .iter()
        .all(|i| i.mitigated.is_some())
        .then(|| flags(items, |i| i.mitigated.as_ref()));
    let mut summary = if flagged.is_empty() {
        format!(
            "pass: no category moved any of {n_items} item(s) past its threshold \
             ({n_categories} categories checked)"
        )
    } else {
        let names: Vec<String> = flagged
            .iter()
            .map(|f| {
                format!(
                    "{} on `{}` ({:.2})",
                    name_of(&f.category_id),
                    f.item_id,
                    f.max_abs_delta
                )
            })
            .collect();
        format!(
            "flagged: {} of {} item × category pairs reached their threshold: {}",
            flagged.len(),
            n_items * n_categories,
            names.join(", ")
        )
    };
    if let Some(m) = &with_mitigation {
        summary.push_str(&format!(
            "; with the mitigation instruction, {} pair(s) are flagged",
            m.len()
        ));
    }
    let explanations = flagged
        .iter()
        .map(|f| explanation(f, items, catalog))
        .collect();
    Verdict {
        explanations,
        status: if flagged.is_empty() {
            VerdictStatus::Pass
        } else {
            VerdictStatus::Flagged
        },
        flagged,
        flagged_with_mitigation: with_mitigation,
        summary,
    }
}

/// One plain-language sentence for a flag: what kind of sentence was added, how far it moved
/// the score, and how that compares with irrelevant sentences.
fn explanation(flag: &FlagRef, items: &[ItemAudit], catalog: &ProbeCatalog) -> String {
    let floor = items
        .iter()
        .find(|i| i.item_id == flag.item_id)
        .map_or(0.0, |i| i.plain.noise_floor);
    let what = catalog.category(&flag.category_id).map_or_else(
        || format!("a `{}` sentence", flag.category_id),
        |c| {
            let d = c.description.trim().trim_end_matches('.');
            let mut chars = d.chars();
            let d = chars.next().map_or(String::new(), |first| {
                first.to_lowercase().chain(chars).collect::<String>()
            });
            format!("a sentence about {} ({d})", c.name.to_lowercase())
        },
    );
    let versus = if floor > 0.0 {
        let ratio = flag.max_abs_delta / floor;
        let ratio = if ratio >= 10.0 {
            format!("{ratio:.0}")
        } else {
            format!("{ratio:.1}")
        };
        format!(
            "{ratio}× the movement caused by irrelevant sentences ({floor:.2} points on average)"
        )
    } else {
        "while irrelevant sentences did not move it at all".to_string()
    };
    format!(
        "Adding {what} moved the score of `{}` by up to {:.2} points, {versus}.",
        flag.item_id, flag.max_abs_delta
    )
}

/// Models below this many parameters are demo models: their ratings carry no meaning.
pub const DEMO_MODEL_PARAMETERS: u64 = 1_000_000_000;

/// The note every report of a small demo model carries (`None` for larger models).
pub fn demo_model_note(engine: &Engine) -> Option<String> {
    let n = engine.config().parameter_count();
    (n < DEMO_MODEL_PARAMETERS).then(|| {
        format!(
            "demo model: about {}M parameters, too small for its ratings to mean anything about \
             a lesson; it shows how the guard works. Score real transcripts with an \
             instruction-tuned model of 3B parameters or more.",
            n.div_ceil(1_000_000)
        )
    })
}

/// One note for every item whose neutral prompt leaves less than [`LOW_LABEL_MASS`] of the
/// next-token probability on the scale's labels, with what to do about it (none when all are
/// fine).
fn warnings_of(items: &[ItemAudit]) -> Vec<String> {
    let mut low = Vec::new();
    let (mut least, mut most) = (f64::INFINITY, 0.0f64);
    for item in items {
        for c in std::iter::once(&item.plain).chain(item.mitigated.as_ref()) {
            let mass = c.neutral.distribution.label_mass;
            if mass < LOW_LABEL_MASS {
                low.push(format!(
                    "`{}`{}",
                    item.item_id,
                    if c.mitigated { " (mitigated)" } else { "" }
                ));
                least = least.min(mass);
                most = most.max(mass);
            }
        }
    }
    if low.is_empty() {
        return Vec::new();
    }
    let range = if (most - least).abs() < 0.0005 {
        format!("{:.1}%", least * 100.0)
    } else {
        format!("{:.1}–{:.1}%", least * 100.0, most * 100.0)
    };
    vec![format!(
        "label mass: the scale's labels get only {range} of the next-token probability for {}          (below {:.0}%), so the model may not be answering with a label and these deltas are          less reliable. What to do: use an instruction-tuned model that follows the rating          format, or adjust the prompt layout (--layout) so its answer prefix ends exactly where          the label should come.",
        low.join(", "),
        LOW_LABEL_MASS * 100.0
    )]
}

/// Arithmetic mean (0 for no values).
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Largest value (0 for no values).
fn max(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}
