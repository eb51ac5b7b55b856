//! The work limits of one call, in one place. Each bounds how much work or memory an input
//! can ask for; each is checked before any model work, and exceeding one is an
//! [`Error::WorkLimit`](crate::Error::WorkLimit) naming it (`DG_STATUS_RESOURCE_LIMIT` in the
//! C ABI). The limits sit far above real use (the built-in rubric has 3 items of 4–7 labels,
//! the built-in catalog 80 wordings; an audit of all three items with the mitigation baseline
//! scores 486 prompts) and far below what would take minutes or gigabytes. Prompt and
//! transcript tokens are bounded by the model's context length (a longer prompt is
//! [`Error::ContextOverflow`](crate::Error::ContextOverflow)), and text is bounded in bytes by
//! [`tokenizer_input_limit`] before it is tokenized. `docs/RELIABILITY.md` lists them with the
//! other guards.

/// Most rubric items in one rubric file or one audit call.
pub const MAX_RUBRIC_ITEMS: usize = 64;

/// Most labels on one item's scale.
pub const MAX_LABELS_PER_ITEM: usize = 100;

/// Most wordings in one probe catalog (all categories, poles and controls together).
pub const MAX_PROBE_WORDINGS: usize = 1024;

/// Most prompt variants one call scores (audit: items × (1 + probes) × conditions).
pub const MAX_VARIANTS_PER_CALL: usize = 4096;

/// Largest transcript, in bytes (UTF-8).
pub const MAX_TRANSCRIPT_BYTES: usize = 256 * 1024;

/// Headroom over the longest vocabulary entry when bounding tokenizer input: normalisation
/// (NFC) can shrink text, so one token may stand for a little more input than its own bytes.
pub const TOKENIZER_BYTES_HEADROOM: usize = 4;

/// Most bytes of text the tokenizer accepts for a model with `context` tokens whose longest
/// vocabulary entry has `longest_token` bytes: more text cannot fit the context window, so it
/// is refused before the tokenizer spends time and memory on it.
pub fn tokenizer_input_limit(context: usize, longest_token: usize) -> usize {
    context.saturating_mul(
        longest_token
            .max(1)
            .saturating_mul(TOKENIZER_BYTES_HEADROOM),
    )
}
