//! Lock-step batched generation on tiny models: every branch of a batch must produce what
//! `Engine::generate` produces for its prompt alone, whatever the other branches do and however
//! each one ends; bad batches are refused with typed errors.

use debias_guard::engine::{MAX_BATCH_KV_TOKENS, MAX_GENERATE_BATCH};
use debias_guard::guard::reasoned::reasoning_prompt;
use debias_guard::{
    Engine, Error, FinishReason, GenerateOptions, Generation, PromptBuilder, Rubric, Transcript,
};
use debias_guard_testkit::{tiny_engine, TinySpec, SAMPLE_TRANSCRIPT, SHORT_TRANSCRIPT};

/// Reasoning prompts of one transcript: neutral and contexts of different lengths (tails of
/// different lengths after a long shared prefix), another item, and another transcript (a
/// branch that diverges early).
fn prompts(engine: &Engine) -> Vec<String> {
    let rubric = Rubric::builtin();
    let builder = PromptBuilder::default();
    let transcript = Transcript::new(SAMPLE_TRANSCRIPT).unwrap();
    let item = &rubric.items[0];
    let mut out: Vec<String> = [
        None,
        Some("The teacher has taught for 25 years."),
        Some("The teacher is in her first year and teaches at a school in a small rural town."),
        Some("Recorded on a Tuesday."),
    ]
    .into_iter()
    .map(|c| reasoning_prompt(engine, &builder, &transcript, item, c, false).unwrap())
    .collect();
    out.push(
        reasoning_prompt(engine, &builder, &transcript, &rubric.items[1], None, false).unwrap(),
    );
    let short = Transcript::new(SHORT_TRANSCRIPT).unwrap();
    out.push(reasoning_prompt(engine, &builder, &short, item, None, false).unwrap());
    out
}

/// A tiny model whose greedy continuations differ between these prompts (with a tied output
/// the random model repeats one token whatever the prompt, which would prove nothing).
fn varied() -> TinySpec {
    TinySpec {
        untied_output: true,
        seed: 8,
        ..TinySpec::default()
    }
}

fn one_at_a_time(
    engine: &Engine,
    prompts: &[String],
    options: &GenerateOptions,
) -> Vec<Generation> {
    prompts
        .iter()
        .map(|p| engine.generate(p, options).unwrap())
        .collect()
}

#[test]
fn greedy_batch_equals_one_at_a_time_with_different_endings() {
    // Chunks of 16 tokens: the prefix and the tail trie are both run in several pieces.
    let engine = tiny_engine("generate-many-varied", &varied(), 16);
    let prompts = prompts(&engine);
    let greedy = GenerateOptions {
        max_tokens: 10,
        ..Default::default()
    };
    let alone = one_at_a_time(&engine, &prompts, &greedy);
    assert!(
        alone.iter().any(|g| g.tokens != alone[0].tokens),
        "the prompts must continue differently for the comparison to mean anything"
    );
    assert_eq!(engine.generate_many(&prompts, &greedy).unwrap(), alone);

    // A stop string taken from one branch's text (and absent from another's) ends that branch
    // early while others run on.
    let stop = alone
        .iter()
        .find_map(|g| {
            let chars: Vec<char> = g.text.chars().collect();
            (2..chars.len().saturating_sub(2)).find_map(|at| {
                let piece: String = chars[at..at + 2].iter().collect();
                let unique = !piece.trim().is_empty()
                    && alone.iter().any(|other| !other.text.contains(&piece));
                unique.then_some(piece)
            })
        })
        .unwrap_or_else(|| panic!("no branch has text of its own: {alone:?}"));
    let stopping = GenerateOptions {
        stop: vec![stop],
        ..greedy
    };
    let alone = one_at_a_time(&engine, &prompts, &stopping);
    let batched = engine.generate_many(&prompts, &stopping).unwrap();
    assert_eq!(batched, alone);
    let finishes: Vec<FinishReason> = batched.iter().map(|g| g.finish).collect();
    assert!(finishes.contains(&FinishReason::StopString), "{finishes:?}");
    assert!(finishes.contains(&FinishReason::MaxTokens), "{finishes:?}");
    let lengths: Vec<usize> = batched.iter().map(|g| g.tokens.len()).collect();
    assert!(lengths.iter().min() < lengths.iter().max(), "{lengths:?}");
}

#[test]
fn sampled_batch_uses_the_same_seed_for_every_prompt() {
    let engine = tiny_engine("generate-many", &TinySpec::default(), 64);
    let prompts = prompts(&engine);
    let sampled = GenerateOptions {
        max_tokens: 8,
        temperature: 8.0,
        seed: 42,
        ..Default::default()
    };
    let batched = engine.generate_many(&prompts, &sampled).unwrap();
    assert_eq!(batched, one_at_a_time(&engine, &prompts, &sampled));
    let other = engine
        .generate_many(
            &prompts,
            &GenerateOptions {
                seed: 43,
                ..sampled
            },
        )
        .unwrap();
    assert_ne!(batched, other, "another seed should sample differently");
}

#[test]
fn one_prompt_and_repeated_prompts_equal_generate() {
    let engine = tiny_engine("generate-many", &TinySpec::default(), 64);
    let prompts = prompts(&engine);
    let greedy = GenerateOptions {
        max_tokens: 6,
        ..Default::default()
    };
    let alone = engine.generate(&prompts[0], &greedy).unwrap();
    assert_eq!(
        engine.generate_many(&prompts[..1], &greedy).unwrap(),
        vec![alone.clone()]
    );
    // Equal prompts share every slot; one prompt a strict prefix of another still gets a row.
    let shorter: String = prompts[0].chars().take(prompts[0].len() / 2).collect();
    let batch = vec![prompts[0].clone(), shorter.clone(), prompts[0].clone()];
    let got = engine.generate_many(&batch, &greedy).unwrap();
    assert_eq!(got[0], alone);
    assert_eq!(got[2], alone);
    assert_eq!(got[1], engine.generate(&shorter, &greedy).unwrap());
}

#[test]
fn a_branch_that_fills_the_context_stops_alone() {
    let spec = TinySpec {
        context_length: 128,
        ..TinySpec::default()
    };
    let engine = tiny_engine("generate-many-ctx", &spec, 32);
    // Grow a text until it is 4 tokens short of the context.
    let mut long = String::from("Count:");
    while engine.tokenize(&long).unwrap().len() < 124 {
        long.push_str(" one");
    }
    while engine.tokenize(&long).unwrap().len() > 124 {
        long.pop();
    }
    let n = engine.tokenize(&long).unwrap().len();
    let short = "Count: one two".to_string();
    let greedy = GenerateOptions {
        max_tokens: 20,
        ..Default::default()
    };
    let prompts = vec![long.clone(), short.clone()];
    let batched = engine.generate_many(&prompts, &greedy).unwrap();
    assert_eq!(batched, one_at_a_time(&engine, &prompts, &greedy));
    assert_eq!(batched[0].finish, FinishReason::ContextFull, "{n} tokens");
    assert_eq!(batched[0].tokens.len(), 128 - n);
    assert_eq!(batched[1].finish, FinishReason::MaxTokens);
}

#[test]
fn bad_batches_are_refused() {
    let engine = tiny_engine("generate-many", &TinySpec::default(), 64);
    let options = GenerateOptions::default();
    let invalid = |r: debias_guard::Result<Vec<Generation>>| {
        assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
    };
    invalid(engine.generate_many(&[], &options));
    invalid(engine.generate_many(&vec!["Hi".to_string(); MAX_GENERATE_BATCH + 1], &options));
    invalid(engine.generate_many(&["Hi".to_string(), String::new()], &options));
    invalid(engine.generate_many(
        &["Hi".to_string()],
        &GenerateOptions {
            max_tokens: 0,
            ..Default::default()
        },
    ));
    // Within the prompt limit but over the KV bound.
    let per = MAX_BATCH_KV_TOKENS / MAX_GENERATE_BATCH + 1;
    invalid(engine.generate_many(
        &vec!["Hi".to_string(); MAX_GENERATE_BATCH],
        &GenerateOptions {
            max_tokens: per,
            ..Default::default()
        },
    ));
    let spec = TinySpec {
        context_length: 16,
        ..TinySpec::default()
    };
    let small = tiny_engine("generate-many-ctx16", &spec, 8);
    let long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen \
                fifteen sixteen seventeen"
        .to_string();
    assert!(matches!(
        small.generate_many(&["Hi".to_string(), long], &options),
        Err(Error::ContextOverflow { .. })
    ));
}
