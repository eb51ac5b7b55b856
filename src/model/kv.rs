//! Per-call attention state. Cloning is cheap (buffers are shared), which is what makes a fork
//! after a shared prefix free: appending never mutates a buffer another state can see, and
//! writes in place when no other state holds it (decode no longer copies the whole cache each
//! step).
//!
//! The state is bound to the adapter it was started with (or to none): keys and values computed
//! under one adapter can only ever be extended under that same adapter, because the forward pass
//! takes the adapter from the state.

use super::lora::LoraWeights;
use candle_core::{Result, Tensor};
use std::sync::Arc;

/// Positions of spare room added when a layer's buffer grows, at least (else a quarter of
/// what it holds), so a decode of many tokens copies the cache a few times, not every step.
const MIN_HEADROOM: usize = 64;

/// One layer's keys and values: two `[1, n_kv, capacity, head_dim]` buffers of which the first
/// `len` positions are in use. Forks share the buffers; an append writes in place only when
/// no other state holds them (and there is room), else it copies them first, so what one
/// state appends is never visible to another.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache {
    buffers: Arc<(Tensor, Tensor)>,
    len: usize,
}

impl LayerCache {
    /// Appends `k` and `v` (`[1, n_kv, new, head_dim]`) to the layer's cache in `slot` and
    /// returns views of every cached position, keys and values.
    pub(crate) fn append(
        slot: &mut Option<Self>,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let new = k.dim(2)?;
        let (k, v) = (k.contiguous()?, v.contiguous()?);
        let cache = match slot.take() {
            Some(mut cache) if cache.len + new <= cache.capacity()? => {
                if Arc::get_mut(&mut cache.buffers).is_some() {
                    // Ours alone, with room: write the new positions in place.
                    cache.buffers.0.slice_set(&k, 2, cache.len)?;
                    cache.buffers.1.slice_set(&v, 2, cache.len)?;
                    cache.len += new;
                    cache
                } else {
                    cache.grown_with(&k, &v)?
                }
            }
            Some(cache) => cache.grown_with(&k, &v)?,
            // A first chunk gets no spare room: a prompt that is only scored never pays for it.
            None => Self {
                buffers: Arc::new((k, v)),
                len: new,
            },
        };
        let views = (
            cache.buffers.0.narrow(2, 0, cache.len)?,
            cache.buffers.1.narrow(2, 0, cache.len)?,
        );
        *slot = Some(cache);
        Ok(views)
    }

    /// Positions the buffers hold.
    fn capacity(&self) -> Result<usize> {
        self.buffers.0.dim(2)
    }

    /// New buffers of our positions followed by `k`, `v`, with spare room after them.
    fn grown_with(&self, k: &Tensor, v: &Tensor) -> Result<Self> {
        let joined = |old: &Tensor, new: &Tensor| -> Result<Tensor> {
            let both = Tensor::cat(&[&old.narrow(2, 0, self.len)?, new], 2)?;
            with_headroom(&both, self.len)
        };
        Ok(Self {
            buffers: Arc::new((joined(&self.buffers.0, k)?, joined(&self.buffers.1, v)?)),
            len: self.len + k.dim(2)?,
        })
    }
}

/// `t` (`[1, n_kv, len, head_dim]`) followed by zeroed spare positions: a quarter of `held`
/// or [`MIN_HEADROOM`], whichever is more.
fn with_headroom(t: &Tensor, held: usize) -> Result<Tensor> {
    let (b, h, _, d) = t.dims4()?;
    let spare = (held / 4).max(MIN_HEADROOM);
    Tensor::cat(
        &[t, &Tensor::zeros((b, h, spare, d), t.dtype(), t.device())?],
        2,
    )
}

/// Keys and values of every layer for the tokens seen so far, and the adapter that made them.
#[derive(Debug, Clone, Default)]
pub struct KvState {
    pub(crate) layers: Vec<Option<LayerCache>>,
    pub(crate) len: usize,
    pub(crate) adapter: Option<Arc<LoraWeights>>,
}

impl KvState {
    /// An empty state for a model of `n_layers` blocks, run with `adapter` (or the base).
    pub fn new(n_layers: usize, adapter: Option<Arc<LoraWeights>>) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
            adapter,
        }
    }

    /// The adapter every token of this state runs with (`None` = the base model).
    pub fn adapter(&self) -> Option<&Arc<LoraWeights>> {
        self.adapter.as_ref()
    }

    /// Number of tokens already in the state (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token has been processed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy that can be extended independently (shares memory with `self`).
    pub fn fork(&self) -> Self {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::LayerCache;
    use candle_core::{Device, Tensor};

    /// `n` positions of one head of width 2 holding `start`, `start + 1`, ….
    fn positions(start: f32, n: usize) -> Tensor {
        let data: Vec<f32> = (0..n * 2).map(|i| start + (i / 2) as f32).collect();
        Tensor::from_vec(data, (1, 1, n, 2), &Device::Cpu).unwrap()
    }

    fn firsts(t: &Tensor) -> Vec<f32> {
        t.squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .map(|p| p[0])
            .collect()
    }

    #[test]
    fn appends_in_place_and_forks_never_see_each_other() {
        let mut original = None;
        LayerCache::append(&mut original, &positions(0.0, 3), &positions(0.0, 3)).unwrap();
        let mut fork = original.clone();
        // The first append after a chunk grows the buffer (with room); the next writes in place.
        LayerCache::append(&mut original, &positions(10.0, 1), &positions(10.0, 1)).unwrap();
        let room = original.as_ref().unwrap().capacity().unwrap();
        let (k, v) =
            LayerCache::append(&mut original, &positions(20.0, 1), &positions(20.0, 1)).unwrap();
        assert_eq!(
            original.as_ref().unwrap().capacity().unwrap(),
            room,
            "copied again"
        );
        assert_eq!(firsts(&k), [0.0, 1.0, 2.0, 10.0, 20.0]);
        assert_eq!(firsts(&v), firsts(&k));
        // The fork still holds only the shared prefix, and its append does not touch the
        // original's buffers (shared until now), nor theirs it.
        let (k, _) =
            LayerCache::append(&mut fork, &positions(30.0, 2), &positions(30.0, 2)).unwrap();
        assert_eq!(firsts(&k), [0.0, 1.0, 2.0, 30.0, 31.0]);
        let shared = original.clone();
        let (k, _) =
            LayerCache::append(&mut original, &positions(40.0, 1), &positions(40.0, 1)).unwrap();
        assert_eq!(firsts(&k), [0.0, 1.0, 2.0, 10.0, 20.0, 40.0]);
        let (k, _) = LayerCache::append(
            &mut shared.clone(),
            &positions(50.0, 1),
            &positions(50.0, 1),
        )
        .unwrap();
        assert_eq!(firsts(&k), [0.0, 1.0, 2.0, 10.0, 20.0, 50.0]);
    }
}
