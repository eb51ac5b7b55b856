//! Records the trainer reads and writes as JSONL: scored transcripts and preference pairs.
