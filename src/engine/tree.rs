//! Prefix-shared evaluation: token sequences are arranged as a trie, every shared run of tokens
//! is prefilled once, and the KV state is forked at each branch point. The result is the same
//! per-token log-probabilities as evaluating every sequence from scratch.

use crate::error::{Error, Result};
use crate::model::{DecoderModel, KvState};

/// One sequence to evaluate: the log-probability of `tokens[i]` given `tokens[..i]` is returned
/// for every `i >= score_from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenQuery {
    /// Full token sequence (prompt and continuation).
    pub tokens: Vec<u32>,
    /// First index whose log-probability is wanted (at least 1).
    pub score_from: usize,
}

/// Statistics of one tree evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Tokens actually run through the model.
    pub tokens_evaluated: usize,
    /// Tokens the queries hold in total (what evaluating each from scratch would cost).
    pub tokens_requested: usize,
    /// Number of forks of the KV state.
    pub forks: usize,
}

struct Node {
    token: u32,
    children: Vec<usize>,
    /// Whether the distribution of the next token after this node is read.
    read: bool,
    /// Log-probabilities of this node's children tokens, filled during evaluation.
    child_logprobs: Vec<(u32, f32)>,
}

/// Evaluates all queries, sharing every common prefix. Returns, per query, the log-probabilities
/// of `tokens[score_from..]`.
pub fn evaluate(
    model: &DecoderModel,
    queries: &[TokenQuery],
    chunk: usize,
) -> Result<(Vec<Vec<f32>>, TreeStats)> {
    let context = model.config().context_length;
    for q in queries {
        if q.score_from == 0 || q.score_from > q.tokens.len() {
            return Err(Error::InvalidInput(format!(
                "score_from {} must be within 1..={}",
                q.score_from,
                q.tokens.len()
            )));
        }
        if q.tokens.len() > context {
            return Err(Error::ContextOverflow {
                tokens: q.tokens.len(),
                context,
            });
        }
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut roots: Vec<usize> = Vec::new();
    let mut paths: Vec<Vec<usize>> = Vec::with_capacity(queries.len());
    for q in queries {
        let mut path: Vec<usize> = Vec::with_capacity(q.tokens.len());
        let mut siblings_of: Option<usize> = None;
        for (i, &tok) in q.tokens.iter().enumerate() {
            let siblings = match siblings_of {
                None => &roots,
                Some(p) => &nodes[p].children,
            };
            let found = siblings.iter().copied().find(|&c| nodes[c].token == tok);
            let id = match found {
                Some(id) => id,
                None => {
                    nodes.push(Node {
                        token: tok,
                        children: Vec::new(),
                        read: false,
                        child_logprobs: Vec::new(),
                    });
                    let id = nodes.len() - 1;
                    match siblings_of {
                        None => roots.push(id),
                        Some(p) => nodes[p].children.push(id),
                    }
                    id
                }
            };
            if i >= q.score_from {
                nodes[path[i - 1]].read = true;
            }
            path.push(id);
            siblings_of = Some(id);
        }
        paths.push(path);
    }
    // A node is worth running only if its own or a descendant's next-token distribution is read.
    let mut needed = vec![false; nodes.len()];
    for id in (0..nodes.len()).rev() {
        // Children are always created after their parent, so a reverse sweep sees them first.
        needed[id] = nodes[id].read || nodes[id].children.iter().any(|&c| needed[c]);
    }
    let mut stats = TreeStats {
        tokens_requested: queries.iter().map(|q| q.tokens.len()).sum(),
        ..TreeStats::default()
    };
    // Depth-first over runs of single-child nodes; each pending branch holds a forked state.
    let mut stack: Vec<(usize, KvState)> = roots
        .iter()
        .rev()
        .filter(|&&r| needed[r])
        .map(|&r| (r, model.new_state()))
        .collect();
    while let Some((start, mut state)) = stack.pop() {
        let mut run = vec![start];
        loop {
            let next: Vec<usize> = nodes[*run.last().expect("run is non-empty")]
                .children
                .iter()
                .copied()
                .filter(|&c| needed[c])
                .collect();
            match next.as_slice() {
                [only] => run.push(*only),
                _ => break,
            }
        }
        let tokens: Vec<u32> = run.iter().map(|&n| nodes[n].token).collect();
        let read: Vec<usize> = (0..run.len()).filter(|&i| nodes[run[i]].read).collect();
        let logits = model.forward(&tokens, &mut state, &read, chunk)?;
        stats.tokens_evaluated += tokens.len();
        if !read.is_empty() {
            let rows = logits.to_vec2::<f32>()?;
            for (row, &i) in rows.iter().zip(&read) {
                let lse = log_sum_exp(row);
                let node = run[i];
                let children = nodes[node].children.clone();
                nodes[node].child_logprobs = children
                    .iter()
                    .map(|&c| {
                        let t = nodes[c].token;
                        (t, (row[t as usize] as f64 - lse) as f32)
                    })
                    .collect();
            }
        }
        let last = *run.last().expect("run is non-empty");
        let children: Vec<usize> = nodes[last]
            .children
            .iter()
            .copied()
            .filter(|&c| needed[c])
            .collect();
        if children.len() > 1 {
            stats.forks += children.len() - 1;
        }
        for (k, &c) in children.iter().enumerate().rev() {
            let branch = if k == 0 {
                std::mem::take(&mut state)
            } else {
                state.fork()
            };
            stack.push((c, branch));
        }
    }
    let results = queries
        .iter()
        .zip(&paths)
        .map(|(q, path)| {
            (q.score_from..q.tokens.len())
                .map(|i| {
                    let parent = &nodes[path[i - 1]];
                    parent
                        .child_logprobs
                        .iter()
                        .find(|(t, _)| *t == q.tokens[i])
                        .map(|&(_, lp)| lp)
                        .expect("every read node has its children's log-probabilities")
                })
                .collect()
        })
        .collect();
    Ok((results, stats))
}

/// `log Σ exp(x)` in f64, stable for large logits.
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln()
}
