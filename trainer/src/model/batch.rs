//! Token sequences to score and their batched, right-padded form.
//!
//! Each sequence is `prompt ++ response`; only response tokens are scored. Rows of a batch are
//! padded on the right to the longest one; a real token never attends to a later cell, so
//! padding never changes a real token's result (padded cells are computed but never read).

use crate::error::{Error, Result};
use debias_guard::model::ModelConfig;
use debias_guard::tokenizer::TextTokenizer;

/// Token id written into padded positions (any valid id works: padding is never read).
const PAD_TOKEN: u32 = 0;

/// One token sequence whose tokens from `response_start` on are scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredSequence {
    tokens: Vec<u32>,
    response_start: usize,
}

impl ScoredSequence {
    /// A sequence scored from `response_start` (at least one token before it and one from it on).
    pub fn new(tokens: Vec<u32>, response_start: usize) -> Result<Self> {
        if response_start == 0 || response_start >= tokens.len() {
            return Err(Error::Model(format!(
                "a scored sequence needs 1 <= response start ({response_start}) < length ({})",
                tokens.len()
            )));
        }
        Ok(Self {
            tokens,
            response_start,
        })
    }

    /// Tokenizes `prompt` and `prompt + response` exactly as the library would tokenize the
    /// full text (BOS and control tokens included), and scores the tokens that follow the
    /// prompt.
    ///
    /// The prompt is tokenized on its own only to find the boundary: the sequence is always the
    /// full text's tokens. When the boundary falls inside a token (the prompt's last token merges
    /// with the response's first), scoring starts at the first token where the two tokenizations
    /// differ, the same rule the library's label scoring uses.
    pub fn from_texts(tokenizer: &TextTokenizer, prompt: &str, response: &str) -> Result<Self> {
        if response.is_empty() {
            return Err(Error::Model("the response to score is empty".into()));
        }
        let prompt_ids = tokenizer.encode(prompt)?;
        let full = tokenizer.encode(&format!("{prompt}{response}"))?;
        let common = common_prefix(&prompt_ids, &full);
        if common == 0 {
            return Err(Error::Model(
                "the prompt shares no leading token with prompt + response".into(),
            ));
        }
        if common >= full.len() {
            return Err(Error::Model(
                "the response adds no token after the prompt".into(),
            ));
        }
        Self::new(full, common)
    }

    /// All tokens, prompt then response.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Index of the first scored token.
    pub fn response_start(&self) -> usize {
        self.response_start
    }

    /// Number of scored tokens.
    pub fn response_len(&self) -> usize {
        self.tokens.len() - self.response_start
    }
}

/// Sequences laid out in a `[rows, len]` grid, with the rows the scorer reads.
///
/// [`TokenBatch::new`] puts one sequence per row. [`TokenBatch::packed`] puts a group of
/// sequences in one row as a token trie: every distinct prefix is one cell, laid out in
/// depth-first order, and a cell attends to itself and its ancestors only, at the position it
/// would have alone. Sequences that share a beginning (a transcript, then several prompt tails,
/// then several labels after each tail) compute each shared token once; scores are the same as
/// with one row per sequence.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    tokens: Vec<u32>,
    /// Position id of every grid cell (RoPE): its depth in the trie.
    positions: Vec<usize>,
    /// One past the last cell of every cell's subtree, within its row (depth-first order, so
    /// the cells a query sees are exactly those `key` with `key <= query < subtree_end[key]`).
    /// A padded cell's subtree is itself.
    subtree_end: Vec<u32>,
    rows: usize,
    len: usize,
    /// Flat index `row * len + p` of each position whose next-token distribution is scored.
    predict_rows: Vec<usize>,
    /// The token each of `predict_rows` must predict.
    targets: Vec<u32>,
    /// Which sequence each of `predict_rows` belongs to.
    owners: Vec<usize>,
    sequences: usize,
    /// Token cells that are not padding.
    cells: usize,
}

/// A token trie of one row under construction: node `0` is the root (no token).
struct Trie {
    token: Vec<u32>,
    depth: Vec<usize>,
    children: Vec<Vec<usize>>,
}

impl Trie {
    fn new() -> Self {
        Self {
            token: vec![0],
            depth: vec![0],
            children: vec![Vec::new()],
        }
    }

    /// Inserts a sequence and returns its node per position.
    fn insert(&mut self, tokens: &[u32]) -> Vec<usize> {
        let mut node = 0;
        let mut path = Vec::with_capacity(tokens.len());
        for (p, &t) in tokens.iter().enumerate() {
            let found = self.children[node]
                .iter()
                .copied()
                .find(|&c| self.token[c] == t);
            node = match found {
                Some(c) => c,
                None => {
                    let c = self.token.len();
                    self.token.push(t);
                    self.depth.push(p);
                    self.children.push(Vec::new());
                    self.children[node].push(c);
                    c
                }
            };
            path.push(node);
        }
        path
    }

    /// Depth-first order of the nodes below the root: the cell of each node and the subtree
    /// end of each cell.
    fn layout(&self) -> (Vec<usize>, Vec<usize>) {
        let n = self.token.len();
        let mut cell_of = vec![usize::MAX; n];
        let mut order = Vec::with_capacity(n - 1);
        let mut stack: Vec<usize> = self.children[0].iter().rev().copied().collect();
        while let Some(node) = stack.pop() {
            cell_of[node] = order.len();
            order.push(node);
            stack.extend(self.children[node].iter().rev().copied());
        }
        let mut end: Vec<usize> = (1..=order.len()).collect();
        for (cell, &node) in order.iter().enumerate().rev() {
            let last = self.children[node]
                .iter()
                .map(|&c| end[cell_of[c]])
                .max()
                .unwrap_or(cell + 1);
            end[cell] = last;
        }
        (cell_of, end)
    }
}

/// One row under construction.
struct Row {
    tokens: Vec<u32>,
    positions: Vec<usize>,
    subtree_end: Vec<usize>,
}

impl TokenBatch {
    /// One sequence per row, padded on the right; token ids and positions are checked against
    /// `config`.
    pub fn new(sequences: &[ScoredSequence], config: &ModelConfig) -> Result<Self> {
        let groups: Vec<&[ScoredSequence]> = sequences.chunks(1).collect();
        Self::packed(&groups, config)
    }

    /// One row per group, laid out as the trie of the group's sequences (each shared prefix
    /// once). Sequences are numbered in order across groups (the score of `groups[0][1]` is
    /// entry 1, …).
    pub fn packed(groups: &[&[ScoredSequence]], config: &ModelConfig) -> Result<Self> {
        if groups.is_empty() || groups.iter().any(|g| g.is_empty()) {
            return Err(Error::Model(
                "a batch needs at least one sequence in every row".into(),
            ));
        }
        let mut rows = Vec::with_capacity(groups.len());
        let mut reads: Vec<(usize, usize, u32, usize)> = Vec::new(); // (row, cell, target, owner)
        let mut owner = 0;
        for (r, group) in groups.iter().enumerate() {
            let mut trie = Trie::new();
            let mut paths = Vec::with_capacity(group.len());
            for seq in group.iter() {
                check_sequence(owner + paths.len(), seq, config)?;
                paths.push(trie.insert(&seq.tokens));
            }
            let (cell_of, subtree_end) = trie.layout();
            let mut row = Row {
                tokens: vec![0; subtree_end.len()],
                positions: vec![0; subtree_end.len()],
                subtree_end,
            };
            // Node 0 is the root (no cell).
            for ((&cell, &token), &depth) in
                cell_of.iter().zip(&trie.token).zip(&trie.depth).skip(1)
            {
                row.tokens[cell] = token;
                row.positions[cell] = depth;
            }
            for (seq, path) in group.iter().zip(&paths) {
                for p in seq.response_start..seq.tokens.len() {
                    reads.push((r, cell_of[path[p - 1]], seq.tokens[p], owner));
                }
                owner += 1;
            }
            rows.push(row);
        }
        let len = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
        let mut batch = Self {
            tokens: Vec::with_capacity(rows.len() * len),
            positions: Vec::with_capacity(rows.len() * len),
            subtree_end: Vec::with_capacity(rows.len() * len),
            rows: rows.len(),
            len,
            predict_rows: reads.iter().map(|&(r, c, _, _)| r * len + c).collect(),
            targets: reads.iter().map(|&(_, _, t, _)| t).collect(),
            owners: reads.iter().map(|&(_, _, _, o)| o).collect(),
            sequences: owner,
            cells: rows.iter().map(|r| r.tokens.len()).sum(),
        };
        for row in rows {
            let used = row.tokens.len();
            let pad = len - used;
            let next = row.positions.iter().max().map_or(0, |p| p + 1);
            batch.tokens.extend(row.tokens);
            batch.tokens.extend(std::iter::repeat_n(PAD_TOKEN, pad));
            batch.positions.extend(row.positions);
            // Padding continues the positions (capped inside the context; never read).
            batch
                .positions
                .extend((0..pad).map(|i| (next + i).min(config.context_length - 1)));
            batch
                .subtree_end
                .extend(row.subtree_end.into_iter().map(|e| e as u32));
            batch.subtree_end.extend((used..len).map(|c| c as u32 + 1));
        }
        Ok(batch)
    }

    /// A batch that scores every position of one sequence but the last (for whole-sequence
    /// logits, e.g. parity checks): the prompt is the first token.
    pub fn whole(tokens: &[u32], config: &ModelConfig) -> Result<Self> {
        if tokens.len() < 2 {
            return Err(Error::Model(
                "a whole-sequence batch needs at least two tokens".into(),
            ));
        }
        Self::new(&[ScoredSequence::new(tokens.to_vec(), 1)?], config)
    }

    /// Number of rows of the grid (sequences, or groups when packed).
    pub fn batch_size(&self) -> usize {
        self.rows
    }

    /// Number of sequences scored (entries of the per-sequence results).
    pub fn sequence_count(&self) -> usize {
        self.sequences
    }

    /// Token cells computed, padding excluded (each shared prefix counted once).
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Row length (longest row).
    pub fn padded_len(&self) -> usize {
        self.len
    }

    /// Token grid, row-major `[rows, padded_len]`.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Position id of every cell, row-major `[rows, padded_len]`.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// Whether, in `row`, the token in cell `query` attends to the token in cell `key`: `key`
    /// is `query` or one of its ancestors in the row's trie (padding sees only itself).
    pub fn sees(&self, row: usize, query: usize, key: usize) -> bool {
        key <= query && query < self.subtree_end[row * self.len + key] as usize
    }

    /// Flat `row * padded_len + cell` index of each cell whose next token is scored, sequence
    /// by sequence.
    pub fn predict_rows(&self) -> &[usize] {
        &self.predict_rows
    }

    /// The token predicted at each of [`Self::predict_rows`].
    pub fn targets(&self) -> &[u32] {
        &self.targets
    }

    /// The sequence each of [`Self::predict_rows`] belongs to.
    pub fn owners(&self) -> &[usize] {
        &self.owners
    }

    /// Number of scored tokens of each sequence.
    pub fn response_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.sequences];
        for &o in &self.owners {
            counts[o] += 1;
        }
        counts
    }
}

/// Checks one sequence's token ids and length against the model.
fn check_sequence(index: usize, seq: &ScoredSequence, config: &ModelConfig) -> Result<()> {
    if seq.tokens.len() > config.context_length {
        return Err(Error::Model(format!(
            "sequence {index}: {} tokens exceed the model's context of {}",
            seq.tokens.len(),
            config.context_length
        )));
    }
    if let Some(&bad) = seq
        .tokens
        .iter()
        .find(|&&t| t as usize >= config.vocab_size)
    {
        return Err(Error::Model(format!(
            "sequence {index}: token id {bad} is outside the vocabulary of {}",
            config.vocab_size
        )));
    }
    Ok(())
}

/// Length of the longest common prefix of two token lists.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
