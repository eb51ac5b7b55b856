//! Prefix-shared evaluation: token sequences are arranged as a trie and every shared token is
//! run through the model once. A long shared run (the transcript) is prefilled in chunks; the
//! subtrees below it are packed into tree-attention batches, where each token attends to the
//! shared KV state and to its own ancestors only, so one pass over the weights serves many
//! variants. Subtrees too large for one batch fork the KV state instead. The result equals
//! evaluating every sequence from scratch, up to f32 summation order.

use super::progress::Progress;
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

/// Evaluates all queries from the empty `root` state (which fixes the adapter every token runs
/// with), sharing every common prefix. Returns, per query, the log-probabilities of
/// `tokens[score_from..]`. `progress` hears tokens run of the tokens needed after every
/// forward pass, and may stop the evaluation between passes.
pub fn evaluate(
    model: &DecoderModel,
    root: &KvState,
    queries: &[TokenQuery],
    chunk: usize,
    progress: Progress<'_>,
) -> Result<(Vec<Vec<f32>>, TreeStats)> {
    check_queries(model, root, queries)?;
    let trie = Trie::build(queries);
    let size = needed_sizes(&trie.nodes);
    let needed: u64 = trie.roots.iter().map(|&r| size[r] as u64).sum();
    progress.report(0, needed)?;
    let mut eval = Evaluation {
        model,
        nodes: trie.nodes,
        size,
        batch_limit: chunk.max(1),
        pending: Vec::new(),
        progress,
        needed,
        stats: TreeStats {
            tokens_requested: queries.iter().map(|q| q.tokens.len()).sum(),
            ..TreeStats::default()
        },
    };
    eval.schedule(&trie.roots, root)?;
    eval.run_pending(chunk)?;
    let results = read_results(queries, &trie.paths, &eval.nodes);
    Ok((results, eval.stats))
}

/// Refuses a non-empty root state, a `score_from` outside the sequence and sequences longer
/// than the model's context.
fn check_queries(model: &DecoderModel, root: &KvState, queries: &[TokenQuery]) -> Result<()> {
    if !root.is_empty() {
        return Err(Error::InvalidInput(
            "tree evaluation starts from an empty state".into(),
        ));
    }
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
    Ok(())
}

/// The queries as a trie: nodes (children always after their parent), the first tokens, and
/// each query's path of node ids.
struct Trie {
    nodes: Vec<Node>,
    roots: Vec<usize>,
    paths: Vec<Vec<usize>>,
}

impl Trie {
    /// Inserts every query, marking the nodes whose next-token distribution is read.
    fn build(queries: &[TokenQuery]) -> Self {
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
        Self {
            nodes,
            roots,
            paths,
        }
    }
}

/// Nodes worth running in each subtree. A node is worth running only if its own or a
/// descendant's next-token distribution is read. Children are always created after their
/// parent, so a reverse sweep sees them first.
fn needed_sizes(nodes: &[Node]) -> Vec<usize> {
    let mut size = vec![0usize; nodes.len()];
    for id in (0..nodes.len()).rev() {
        let below: usize = nodes[id].children.iter().map(|&c| size[c]).sum();
        size[id] = if nodes[id].read || below > 0 {
            1 + below
        } else {
            0
        };
    }
    size
}

/// Per query, the recorded log-probabilities of `tokens[score_from..]`.
fn read_results(queries: &[TokenQuery], paths: &[Vec<usize>], nodes: &[Node]) -> Vec<Vec<f32>> {
    queries
        .iter()
        .zip(paths)
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
        .collect()
}

/// State of one evaluation: the trie, what is left to run, and counters.
struct Evaluation<'a> {
    model: &'a DecoderModel,
    nodes: Vec<Node>,
    /// Nodes worth running in each subtree (0 = nothing below is read).
    size: Vec<usize>,
    /// Most tokens in one tree-attention batch.
    batch_limit: usize,
    /// Subtrees too large for one batch, each with the state it continues.
    pending: Vec<(usize, KvState)>,
    /// Hears `(tokens_evaluated, needed)` after every forward pass.
    progress: Progress<'a>,
    /// Tokens the whole evaluation runs.
    needed: u64,
    stats: TreeStats,
}

impl Evaluation<'_> {
    /// Runs the subtrees too large for one batch: each one's leading chain is prefilled in
    /// chunks of `chunk` tokens on its own state, then what follows is scheduled.
    fn run_pending(&mut self, chunk: usize) -> Result<()> {
        while let Some((start, mut state)) = self.pending.pop() {
            let run = self.chain(start);
            let tokens: Vec<u32> = run.iter().map(|&n| self.nodes[n].token).collect();
            let read: Vec<usize> = (0..run.len())
                .filter(|&i| self.nodes[run[i]].read)
                .collect();
            let logits = self.model.forward(&tokens, &mut state, &read, chunk)?;
            self.stats.tokens_evaluated += tokens.len();
            self.progress
                .report(self.stats.tokens_evaluated as u64, self.needed)?;
            let read_nodes: Vec<usize> = read.iter().map(|&i| run[i]).collect();
            self.record(&read_nodes, &logits)?;
            let last = *run.last().expect("run is non-empty");
            let children = self.needed_children(last);
            self.schedule(&children, &state)?;
        }
        Ok(())
    }

    /// Children of `id` whose subtree reads something.
    fn needed_children(&self, id: usize) -> Vec<usize> {
        self.nodes[id]
            .children
            .iter()
            .copied()
            .filter(|&c| self.size[c] > 0)
            .collect()
    }

    /// The run of nodes from `start` while each has exactly one needed child.
    fn chain(&self, start: usize) -> Vec<usize> {
        let mut run = vec![start];
        loop {
            match self
                .needed_children(*run.last().expect("run is non-empty"))
                .as_slice()
            {
                [only] => run.push(*only),
                _ => return run,
            }
        }
    }

    /// Evaluates the subtrees under `children` on top of `state`: those that fit are packed
    /// into tree-attention batches, larger ones are queued to be split further.
    fn schedule(&mut self, children: &[usize], state: &KvState) -> Result<()> {
        let children: Vec<usize> = children
            .iter()
            .copied()
            .filter(|&c| self.size[c] > 0)
            .collect();
        self.stats.forks += children.len().saturating_sub(1);
        let mut batch: Vec<usize> = Vec::new();
        let mut batch_size = 0;
        for c in children {
            if self.size[c] > self.batch_limit {
                self.pending.push((c, state.fork()));
                continue;
            }
            if batch_size + self.size[c] > self.batch_limit {
                self.run_batch(&batch, state)?;
                batch.clear();
                batch_size = 0;
            }
            batch.push(c);
            batch_size += self.size[c];
        }
        if !batch.is_empty() {
            self.run_batch(&batch, state)?;
        }
        Ok(())
    }

    /// Runs whole subtrees in one tree-attention pass.
    fn run_batch(&mut self, roots: &[usize], state: &KvState) -> Result<()> {
        let mut order: Vec<usize> = Vec::new();
        let mut parents: Vec<Option<usize>> = Vec::new();
        let mut walk: Vec<(usize, Option<usize>)> =
            roots.iter().rev().map(|&r| (r, None)).collect();
        while let Some((node, parent)) = walk.pop() {
            let index = order.len();
            order.push(node);
            parents.push(parent);
            let children = self.needed_children(node);
            self.stats.forks += children.len().saturating_sub(1);
            walk.extend(children.into_iter().rev().map(|c| (c, Some(index))));
        }
        let tokens: Vec<u32> = order.iter().map(|&n| self.nodes[n].token).collect();
        let read: Vec<usize> = (0..order.len())
            .filter(|&i| self.nodes[order[i]].read)
            .collect();
        let logits = self.model.forward_tree(&tokens, &parents, &read, state)?;
        self.stats.tokens_evaluated += tokens.len();
        self.progress
            .report(self.stats.tokens_evaluated as u64, self.needed)?;
        let read_nodes: Vec<usize> = read.iter().map(|&i| order[i]).collect();
        self.record(&read_nodes, &logits)
    }

    /// Stores the log-probabilities of each read node's children from its logits row.
    fn record(&mut self, read_nodes: &[usize], logits: &candle_core::Tensor) -> Result<()> {
        if read_nodes.is_empty() {
            return Ok(());
        }
        let rows = logits.to_vec2::<f32>()?;
        for (row, &node) in rows.iter().zip(read_nodes) {
            let lse = log_sum_exp(row);
            let children = self.nodes[node].children.clone();
            self.nodes[node].child_logprobs = children
                .iter()
                .map(|&c| {
                    let t = self.nodes[c].token;
                    (t, (row[t as usize] as f64 - lse) as f32)
                })
                .collect();
        }
        Ok(())
    }
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
