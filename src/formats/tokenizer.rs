//! Byte-level BPE tokenizers rebuilt from GGUF metadata (`tokenizer.ggml.*`), so a model file is
//! all that is needed (Hugging Face directories bring a `tokenizer.json`, read by
//! [`crate::formats::hf`]; `TextTokenizer::open` in [`crate::formats`] picks the file's own).
//! Each supported `tokenizer.ggml.pre` maps to the pre-tokenization its family was trained with;
//! an unknown one is an error rather than a guess.

use crate::error::{Error, Result};
use crate::formats::gguf::{GgufFile, MetadataExt, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// Split pattern of Llama 3 (numbers in groups of up to three).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Split pattern of Qwen2 (every digit on its own).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types that mark control tokens (3) and user-defined added tokens (4).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Largest vocabulary accepted.
const MAX_VOCAB: usize = 1 << 20;

/// Names of end-of-turn tokens that stop generation besides `eos_token_id`.
const END_OF_TURN_NAMES: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|end|>",
];

/// The pre-tokenizer families this library implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// GPT-2 regex (`gpt2`).
    Gpt2,
    /// Digits split individually, then GPT-2 regex (`smollm`).
    SmolLm,
    /// Llama 3 regex (`llama-bpe`, `llama3`).
    Llama3,
    /// Qwen2 regex with NFC normalisation (`qwen2`).
    Qwen2,
}

impl PreTokenizerKind {
    /// Maps `tokenizer.ggml.pre` to a family.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "gpt2" | "gpt-2" => Ok(Self::Gpt2),
            "smollm" => Ok(Self::SmolLm),
            "llama-bpe" | "llama3" | "llama-v3" => Ok(Self::Llama3),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(Error::Tokenizer(format!(
                "unknown pre-tokenizer `{other}` in tokenizer.ggml.pre (supported: gpt2, smollm, llama-bpe, llama3, qwen2)"
            ))),
        }
    }
}

/// A tokenizer plus the special-token facts the engine needs.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    add_bos: bool,
    stop_ids: Vec<u32>,
    special_texts: Vec<String>,
    tokens: Vec<String>,
    /// Longest text [`TextTokenizer::encode`] accepts, in bytes (see [`TextTokenizer::with_context`]).
    max_input_bytes: usize,
}

impl TextTokenizer {
    /// Rebuilds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let md = &file.metadata;
        let model = md.req_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)"
            )));
        }
        let pre = md.opt_str("tokenizer.ggml.pre")?.ok_or_else(|| {
            Error::Tokenizer("tokenizer.ggml.pre is missing; cannot tell how to split text".into())
        })?;
        let kind = PreTokenizerKind::from_name(pre)?;
        let tokens = string_array(
            md.req_array("tokenizer.ggml.tokens")?,
            "tokenizer.ggml.tokens",
        )?;
        let merges = string_array(
            md.req_array("tokenizer.ggml.merges")?,
            "tokenizer.ggml.merges",
        )?;
        let types = match md.get("tokenizer.ggml.token_type") {
            Some(v) => int_array(v, "tokenizer.ggml.token_type")?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::metadata(
                "tokenizer.ggml.token_type",
                format!("{} entries for {} tokens", types.len(), tokens.len()),
            ));
        }
        let token_id = |key: &str| -> Result<Option<u32>> {
            match md.opt_usize(key)? {
                Some(id) if id < tokens.len() => Ok(Some(id as u32)),
                Some(id) => Err(Error::metadata(
                    key,
                    format!("id {id} is outside the vocabulary"),
                )),
                None => Ok(None),
            }
        };
        let bos = token_id("tokenizer.ggml.bos_token_id")?;
        let eos = token_id("tokenizer.ggml.eos_token_id")?;
        let eot = token_id("tokenizer.ggml.eot_token_id")?;
        let add_bos = md
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(false)
            && bos.is_some();
        Self::build(TokenizerParts {
            kind,
            tokens,
            merges,
            types,
            bos,
            add_bos,
            stop: [eos, eot].into_iter().flatten().collect(),
        })
    }

    /// Builds a tokenizer from its parts (vocabulary, merges as `"a b"` strings, GGUF token types).
    pub fn build(parts: TokenizerParts) -> Result<Self> {
        let TokenizerParts {
            kind,
            tokens,
            merges,
            types,
            bos,
            add_bos,
            mut stop,
        } = parts;
        let mut vocab = tokenizers::models::bpe::Vocab::default();
        for (id, tok) in tokens.iter().enumerate() {
            // Duplicate strings keep their first id, as llama.cpp does.
            vocab.entry(tok.clone()).or_insert(id as u32);
        }
        let mut pairs = Vec::with_capacity(merges.len());
        for (line, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                Error::Tokenizer(format!(
                    "merge {line} `{m}` is not two tokens separated by a space"
                ))
            })?;
            pairs.push((a.to_string(), b.to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, pairs)
            .ignore_merges(kind == PreTokenizerKind::Llama3)
            .build()
            .map_err(|e| Error::Tokenizer(format!("invalid BPE vocabulary/merges: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(kind)?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        if kind == PreTokenizerKind::Qwen2 {
            inner.with_normalizer(Some(NFC));
        }
        let mut special_texts = Vec::new();
        let mut added = Vec::new();
        for (id, (tok, &ty)) in tokens.iter().zip(&types).enumerate() {
            if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
                added.push(AddedToken::from(tok.clone(), true).normalized(false));
                special_texts.push(tok.clone());
                if ty == TOKEN_TYPE_CONTROL && END_OF_TURN_NAMES.contains(&tok.as_str()) {
                    stop.push(id as u32);
                }
            }
        }
        inner.add_special_tokens(&added);
        stop.sort_unstable();
        stop.dedup();
        Ok(Self {
            inner,
            bos,
            add_bos,
            stop_ids: stop,
            special_texts,
            tokens,
            max_input_bytes: usize::MAX,
        })
    }

    /// Wraps a ready `tokenizers` tokenizer (from a `tokenizer.json`): the vocabulary, added
    /// tokens and end-of-turn markers are read from it.
    pub(crate) fn from_tokenizer(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        add_bos: bool,
        mut stop: Vec<u32>,
    ) -> Result<Self> {
        let size = inner.get_vocab_size(true);
        if size == 0 || size > MAX_VOCAB {
            return Err(Error::Tokenizer(format!(
                "vocabulary of {size} tokens is out of range"
            )));
        }
        let mut tokens = vec![String::new(); size];
        for (text, id) in inner.get_vocab(true) {
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = text;
            }
        }
        let mut special_texts = Vec::new();
        for (id, added) in inner.get_added_tokens_decoder() {
            if added.special && END_OF_TURN_NAMES.contains(&added.content.as_str()) {
                stop.push(id);
            }
            special_texts.push(added.content.clone());
        }
        special_texts.sort();
        if let Some(&bad) = stop
            .iter()
            .chain(bos.iter())
            .find(|&&id| id as usize >= size)
        {
            return Err(Error::Tokenizer(format!(
                "special token id {bad} is outside the vocabulary of {size}"
            )));
        }
        stop.sort_unstable();
        stop.dedup();
        Ok(Self {
            inner,
            bos,
            add_bos: add_bos && bos.is_some(),
            stop_ids: stop,
            special_texts,
            tokens,
            max_input_bytes: usize::MAX,
        })
    }

    /// Whether BOS is prepended when encoding.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The underlying `tokenizers` tokenizer (e.g. to save it as `tokenizer.json`).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// This tokenizer with its input bounded for a model of `context` tokens: text longer than
    /// [`crate::limits::tokenizer_input_limit`] (which cannot fit the context window) is
    /// refused by [`TextTokenizer::encode`] before it is tokenized.
    pub fn with_context(mut self, context: usize) -> Self {
        let longest = self.tokens.iter().map(String::len).max().unwrap_or(1);
        self.max_input_bytes = crate::limits::tokenizer_input_limit(context, longest);
        self
    }

    /// Longest text [`TextTokenizer::encode`] accepts, in bytes.
    pub fn max_input_bytes(&self) -> usize {
        self.max_input_bytes
    }

    /// Token ids of `text`, with control tokens written in the text (e.g. `<|im_start|>`) parsed
    /// as such, and BOS prepended when the model asks for it and the text does not start with it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Error::check_limit("tokenizer input bytes", text.len(), self.max_input_bytes)?;
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(bos) = self.bos.filter(|_| self.add_bos) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Text of `ids` (control tokens included verbatim).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(format!("decoding failed: {e}")))
    }

    /// Ids that end a generated turn (EOS, EOT and the family's end-of-turn markers).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The text of a token id, as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The BOS token text, if the model has one.
    pub fn bos_text(&self) -> Option<&str> {
        self.bos.and_then(|id| self.token_text(id))
    }

    /// The first stop token's text (what chat templates call `eos_token`).
    pub fn eos_text(&self) -> Option<&str> {
        self.stop_ids.first().and_then(|&id| self.token_text(id))
    }

    /// The first control or added token written literally in `text`, if any.
    pub fn find_special_text<'a>(&'a self, text: &str) -> Option<&'a str> {
        self.special_texts
            .iter()
            .find(|s| text.contains(s.as_str()))
            .map(String::as_str)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
}

/// Everything needed to build a [`TextTokenizer`].
#[derive(Debug, Clone)]
pub struct TokenizerParts {
    /// Pre-tokenizer family.
    pub kind: PreTokenizerKind,
    /// Byte-level token strings; index = id.
    pub tokens: Vec<String>,
    /// Merges, `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// GGUF token type per token (1 normal, 3 control, 4 user-defined, …).
    pub types: Vec<i64>,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// Whether to prepend BOS when encoding.
    pub add_bos: bool,
    /// Ids that stop generation.
    pub stop: Vec<u32>,
}

fn pre_tokenizer(kind: PreTokenizerKind) -> Result<PreTokenizerWrapper> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        Split::new(
            SplitPattern::Regex(pattern.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| Error::Tokenizer(format!("bad split pattern: {e}")))
    };
    let byte_level =
        |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    Ok(match kind {
        PreTokenizerKind::Gpt2 => byte_level(true),
        PreTokenizerKind::SmolLm => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        PreTokenizerKind::Llama3 => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(LLAMA3_SPLIT)?,
            byte_level(false),
        ])),
        PreTokenizerKind::Qwen2 => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(QWEN2_SPLIT)?,
            byte_level(false),
        ])),
    })
}

fn string_array(values: &[Value], key: &str) -> Result<Vec<String>> {
    values
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::metadata(key, "expected an array of strings"))
        })
        .collect()
}

fn int_array(value: &Value, key: &str) -> Result<Vec<i64>> {
    let arr = value
        .as_array()
        .ok_or_else(|| Error::metadata(key, "expected an array"))?;
    arr.iter()
        .map(|v| match *v {
            Value::I32(x) => Ok(x.into()),
            Value::U32(x) => Ok(x.into()),
            Value::I64(x) => Ok(x),
            Value::U8(x) => Ok(x.into()),
            Value::I8(x) => Ok(x.into()),
            Value::U16(x) => Ok(x.into()),
            Value::I16(x) => Ok(x.into()),
            _ => Err(Error::metadata(key, "expected an array of integers")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn pieces(kind: PreTokenizerKind, text: &str) -> Vec<String> {
        let pre = pre_tokenizer(kind).expect("builds");
        let mut s = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut s).expect("splits");
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, _, _)| piece.to_string())
            .collect()
    }

    #[test]
    fn each_family_splits_numbers_its_own_way() {
        // Byte-level pieces: a leading space shows as 'Ġ'.
        assert_eq!(
            pieces(PreTokenizerKind::Llama3, "x 12345"),
            ["x", "Ġ", "123", "45"]
        );
        assert_eq!(
            pieces(PreTokenizerKind::Qwen2, "x 123"),
            ["x", "Ġ", "1", "2", "3"]
        );
        assert_eq!(
            pieces(PreTokenizerKind::SmolLm, "Rating: 12"),
            ["Rating", ":", "Ġ", "1", "2"]
        );
        assert_eq!(
            pieces(PreTokenizerKind::Gpt2, "Rating: 12"),
            ["Rating", ":", "Ġ12"]
        );
    }

    #[test]
    fn unknown_pre_tokenizer_is_an_error() {
        let err = PreTokenizerKind::from_name("falcon").unwrap_err();
        assert!(err.to_string().contains("falcon"));
    }
}
