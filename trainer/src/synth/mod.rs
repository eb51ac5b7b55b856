//! Deterministic synthetic NCTE-format transcripts with a documented scoring rule.
