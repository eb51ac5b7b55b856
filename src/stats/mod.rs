//! Statistics shared by dataset audits and the trainer's evaluation: cluster bootstrap intervals
//! with a generator whose stream depends on its seed alone.

pub mod bootstrap;
