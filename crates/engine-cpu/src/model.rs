//! A Llama-family transformer over candle's quantized CPU kernels, written for serving: every
//! sequence has its own KV cache ([`SeqKv`]), and one [`LlamaModel::forward`] runs a whole batch
//! of sequences, each with any number of new tokens (a prefill chunk or one decode token).
//!
//! All rows of a batch go through each weight matrix together (one quantized matmul per
//! projection per layer, whatever the number of sequences); only attention runs per sequence,
//! against that sequence's cache. Grouped-query attention needs no copies of the KV heads: the
//! query heads sharing a KV head are folded into the matmul's row dimension.
//!
//! Conventions of the GGUF files llama.cpp writes: `token_embd` / `blk.N.*` / `output_norm` /
//! `output` tensors (no `output` = tied embeddings), Q and K rows permuted so that rotary
//! embeddings rotate adjacent pairs (candle's `rope_i`).

use std::io::{Read, Seek};
use std::path::Path;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{D, DType, Device, Module, Tensor};
use std::sync::Arc;
use switchyard_structured::TokenVocab;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("model metadata: {0}")]
    Metadata(String),
    #[error("compute failed: {0}")]
    Compute(#[from] candle_core::Error),
}

/// The hyper-parameters of a loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_freq_base: f32,
    pub rms_eps: f64,
}

impl LlamaConfig {
    /// Floats one token's K and V take in one layer.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Bytes one token's KV cache takes over all layers.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layer * self.kv_dim() * std::mem::size_of::<f32>()
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
}

/// The weights of a model, shared read-only by every sequence.
pub struct LlamaModel {
    config: LlamaConfig,
    /// Dequantized: a lookup table, not a matmul.
    embeddings: Tensor,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: QMatMul,
    /// `(context_length, head_dim / 2)`.
    rope_cos: Tensor,
    rope_sin: Tensor,
    device: Device,
    /// The tokenizer's tokens as bytes, for structured output (`None`: the file's tokenizer is
    /// missing or of a kind the engine cannot read).
    vocab: Option<Arc<TokenVocab>>,
    /// `tokenizer.ggml.eos_token_id`.
    eos_token: Option<u32>,
}

/// The vocabulary in a GGUF file's `tokenizer.ggml.*` metadata, as bytes per token.
fn vocab_of(content: &gguf_file::Content) -> Result<TokenVocab, String> {
    let md = |key: &str| {
        content
            .metadata
            .get(key)
            .ok_or_else(|| format!("no `{key}`"))
    };
    let model = md("tokenizer.ggml.model")?
        .to_string()
        .map_err(|_| "`tokenizer.ggml.model` is not a string".to_owned())?;
    let tokens = md("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(|_| "`tokenizer.ggml.tokens` is not an array".to_owned())?;
    let texts: Vec<&str> = tokens
        .iter()
        .map(|t| t.to_string().map(String::as_str))
        .collect::<Result<_, _>>()
        .map_err(|_| "`tokenizer.ggml.tokens` holds a non-string".to_owned())?;
    let types: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(v) => v
            .to_vec()
            .map_err(|_| "`tokenizer.ggml.token_type` is not an array".to_owned())?
            .iter()
            .map(|t| t.to_i32().map(i64::from))
            .collect::<Result<_, _>>()
            .map_err(|_| "`tokenizer.ggml.token_type` holds a non-integer".to_owned())?,
    };
    TokenVocab::from_gguf(model, texts.into_iter(), &types)
}

/// How the weight matrices are kept in memory and multiplied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// Dequantized to f32 at load: exact (logits equal to transformers' on the dequantized
    /// weights), 4 bytes per weight, f32 matmuls.
    #[default]
    F32,
    /// As stored in the file, with candle's quantized kernels (activations quantized to 8 bits
    /// per row); some formats (Q4_1, Q5_x) have no SIMD kernel in candle and are slow.
    Native,
    /// Re-quantized to Q8_0 at load (near-lossless from 4-bit formats, SIMD kernels on x86).
    Q8_0,
}

impl std::str::FromStr for WeightFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(WeightFormat::F32),
            "native" => Ok(WeightFormat::Native),
            "q8_0" => Ok(WeightFormat::Q8_0),
            other => Err(format!(
                "unknown weight format `{other}` (f32, native, q8_0)"
            )),
        }
    }
}

fn matmul_of(
    qtensor: QTensor,
    format: WeightFormat,
    device: &Device,
) -> Result<QMatMul, ModelError> {
    Ok(match format {
        WeightFormat::Native => QMatMul::from_qtensor(qtensor)?,
        WeightFormat::F32 => QMatMul::Tensor(qtensor.dequantize(device)?),
        WeightFormat::Q8_0 => match qtensor.dtype() {
            GgmlDType::Q8_0 | GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                QMatMul::from_qtensor(qtensor)?
            }
            _ => QMatMul::from_qtensor(QTensor::quantize(
                &qtensor.dequantize(device)?,
                GgmlDType::Q8_0,
            )?)?,
        },
    })
}

/// Architectures whose GGUF tensors follow the Llama layout and arithmetic exactly.
const SUPPORTED_ARCHITECTURES: [&str; 2] = ["llama", "mistral"];

impl LlamaModel {
    /// Loads a GGUF file.
    pub fn load(path: &Path, format: WeightFormat) -> Result<Self, ModelError> {
        let file_error = |message: String| ModelError::File {
            path: path.display().to_string(),
            message,
        };
        let mut file = std::fs::File::open(path).map_err(|e| file_error(e.to_string()))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| file_error(format!("not a readable GGUF file: {e}")))?;
        Self::from_gguf(content, &mut file, format).map_err(|e| match e {
            ModelError::Compute(e) => file_error(e.to_string()),
            other => other,
        })
    }

    fn from_gguf<R: Read + Seek>(
        content: gguf_file::Content,
        reader: &mut R,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let device = Device::Cpu;
        let md = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| ModelError::Metadata(format!("`{key}` is missing")))
        };
        let architecture = md("general.architecture")?
            .to_string()
            .map_err(|_| ModelError::Metadata("`general.architecture` is not a string".into()))?
            .clone();
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(ModelError::Unsupported(format!(
                "architecture `{architecture}` (supported: {})",
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        let uint = |name: &str| -> Result<usize, ModelError> {
            let key = format!("{architecture}.{name}");
            let value = md(&key)?;
            value
                .to_u64()
                .or_else(|_| value.to_u32().map(u64::from))
                .ok()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| ModelError::Metadata(format!("`{key}` must be a positive integer")))
        };
        let float = |name: &str, default: f32| -> Result<f32, ModelError> {
            let key = format!("{architecture}.{name}");
            match content.metadata.get(&key) {
                None => Ok(default),
                Some(v) => v
                    .to_f32()
                    .ok()
                    .filter(|f| f.is_finite() && *f > 0.0)
                    .ok_or_else(|| {
                        ModelError::Metadata(format!("`{key}` must be a positive number"))
                    }),
            }
        };
        let n_layer = uint("block_count")?;
        let hidden = uint("embedding_length")?;
        let n_head = uint("attention.head_count")?;
        let n_kv_head = match content
            .metadata
            .get(&format!("{architecture}.attention.head_count_kv"))
        {
            None => n_head,
            Some(_) => uint("attention.head_count_kv")?,
        };
        if hidden % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(ModelError::Unsupported(format!(
                "{n_head} heads, {n_kv_head} KV heads and width {hidden} do not divide evenly"
            )));
        }
        let head_dim = hidden / n_head;
        if head_dim % 2 != 0 {
            return Err(ModelError::Unsupported(format!("odd head size {head_dim}")));
        }
        if let Some(rope_dim) = content
            .metadata
            .get(&format!("{architecture}.rope.dimension_count"))
            && rope_dim.to_u32().ok().map(|d| d as usize) != Some(head_dim)
        {
            return Err(ModelError::Unsupported(format!(
                "partial rotary embeddings ({rope_dim:?} of {head_dim} dimensions)"
            )));
        }
        let context_length = uint("context_length")?;
        let rope_freq_base = float("rope.freq_base", 10_000.0)?;
        let rms_eps = f64::from(float("attention.layer_norm_rms_epsilon", 1e-5)?);

        let mut tensor = |name: &str| -> Result<QTensor, ModelError> {
            content
                .tensor(reader, name, &device)
                .map_err(|e| ModelError::Metadata(format!("tensor `{name}`: {e}")))
        };
        let token_embd = tensor("token_embd.weight")?;
        let (vocab_size, embd_width) = token_embd.shape().dims2()?;
        if embd_width != hidden {
            return Err(ModelError::Metadata(format!(
                "token_embd is {vocab_size}x{embd_width}, expected width {hidden}"
            )));
        }
        let embeddings = token_embd.dequantize(&device)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            matmul_of(tensor("output.weight")?, format, &device)?
        } else if format == WeightFormat::F32 {
            // Tied: the table above is the output matrix already.
            QMatMul::Tensor(embeddings.clone())
        } else {
            matmul_of(token_embd, format, &device)?
        };
        let output_norm = tensor("output_norm.weight")?.dequantize(&device)?;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let mut q = |name: &str| -> Result<QMatMul, ModelError> {
                matmul_of(tensor(&format!("blk.{i}.{name}.weight"))?, format, &device)
            };
            let wq = q("attn_q")?;
            let wk = q("attn_k")?;
            let wv = q("attn_v")?;
            let wo = q("attn_output")?;
            let w_gate = q("ffn_gate")?;
            let w_up = q("ffn_up")?;
            let w_down = q("ffn_down")?;
            layers.push(Layer {
                attn_norm: tensor(&format!("blk.{i}.attn_norm.weight"))?.dequantize(&device)?,
                ffn_norm: tensor(&format!("blk.{i}.ffn_norm.weight"))?.dequantize(&device)?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
        }
        let (rope_cos, rope_sin) = rope_tables(head_dim, rope_freq_base, context_length, &device)?;
        let vocab = match vocab_of(&content) {
            Ok(v) => Some(Arc::new(v)),
            Err(why) => {
                tracing::warn!(%why, "the model's vocabulary is unreadable: no structured output");
                None
            }
        };
        let eos_token = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok());
        Ok(LlamaModel {
            config: LlamaConfig {
                architecture,
                n_layer,
                hidden,
                n_head,
                n_kv_head,
                head_dim,
                vocab_size,
                context_length,
                rope_freq_base,
                rms_eps,
            },
            embeddings,
            layers,
            output_norm,
            output,
            rope_cos,
            rope_sin,
            device,
            vocab,
            eos_token,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The vocabulary as bytes (structured output needs it).
    pub fn vocab(&self) -> Option<&Arc<TokenVocab>> {
        self.vocab.as_ref()
    }

    /// The end-of-sequence token the file names.
    pub fn eos_token(&self) -> Option<u32> {
        self.eos_token
    }

    /// An empty cache for one sequence, with room for `tokens` before it grows.
    pub fn new_cache(&self, tokens: usize) -> Result<SeqKv, ModelError> {
        SeqKv::new(&self.config, tokens, &self.device)
    }

    /// Runs one step. Each entry of `batch` appends its `tokens` to its cache (positions follow
    /// the cache's length). Returns the logits of the last new token of every entry whose
    /// `want_logits` is set, one row each, in batch order: `(rows, vocab)`.
    pub fn forward(&self, batch: &mut [BatchEntry<'_>]) -> Result<Option<Tensor>, ModelError> {
        let c = &self.config;
        let total: usize = batch.iter().map(|e| e.tokens.len()).sum();
        if total == 0 {
            return Ok(None);
        }
        for entry in batch.iter() {
            if entry.cache.len + entry.tokens.len() > c.context_length {
                return Err(ModelError::Unsupported(format!(
                    "{} tokens exceed the context length {}",
                    entry.cache.len + entry.tokens.len(),
                    c.context_length
                )));
            }
        }
        let mut ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        for entry in batch.iter() {
            ids.extend_from_slice(entry.tokens);
            positions
                .extend((entry.cache.len..entry.cache.len + entry.tokens.len()).map(|p| p as u32));
        }
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let half = c.head_dim / 2;
        let cos = self
            .rope_cos
            .index_select(&positions, 0)?
            .reshape((total, 1, half))?;
        let sin = self
            .rope_sin
            .index_select(&positions, 0)?
            .reshape((total, 1, half))?;
        let rep = c.n_head / c.n_kv_head;
        let scale = 1.0 / (c.head_dim as f64).sqrt();

        let mut x = self.embeddings.index_select(&ids, 0)?;
        let mut attn_rows = Vec::with_capacity(batch.len());
        for (layer_index, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let q = layer
                .wq
                .forward(&h)?
                .reshape((total, c.n_head, 1, c.head_dim))?;
            let k = layer
                .wk
                .forward(&h)?
                .reshape((total, c.n_kv_head, 1, c.head_dim))?;
            let v = layer.wv.forward(&h)?;
            // Rotates each row by its own position: `(rows, heads, 1, head_dim)` with per-row
            // `(rows, 1, head_dim / 2)` tables.
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?.reshape((total, c.kv_dim()))?;

            attn_rows.clear();
            let mut row = 0;
            for entry in batch.iter_mut() {
                let n = entry.tokens.len();
                if n == 0 {
                    continue;
                }
                let start = entry.cache.len;
                entry.cache.write(
                    layer_index,
                    &k.narrow(0, row, n)?,
                    &v.narrow(0, row, n)?,
                    start,
                )?;
                let len = start + n;
                let (keys, values) = entry.cache.view(layer_index, len)?;
                // (n, kv, rep, d) -> (kv, rep * n, d): the query heads of one KV head as rows.
                let qs = q
                    .narrow(0, row, n)?
                    .reshape((n, c.n_kv_head, rep, c.head_dim))?
                    .permute((1, 2, 0, 3))?
                    .contiguous()?
                    .reshape((c.n_kv_head, rep * n, c.head_dim))?;
                // keys: (len, kv, d) -> (kv, d, len)
                let scores = (qs.matmul(&keys.permute((1, 2, 0))?.contiguous()?)? * scale)?;
                let scores = if n > 1 {
                    let mask = causal_mask(n, start, &self.device)?;
                    scores
                        .reshape((c.n_kv_head, rep, n, len))?
                        .broadcast_add(&mask)?
                        .reshape((c.n_kv_head, rep * n, len))?
                } else {
                    scores
                };
                let probs = candle_nn::ops::softmax_last_dim(&scores)?;
                // values: (len, kv, d) -> (kv, len, d)
                let out = probs.matmul(&values.transpose(0, 1)?.contiguous()?)?;
                let out = out
                    .reshape((c.n_kv_head, rep, n, c.head_dim))?
                    .permute((2, 0, 1, 3))?
                    .contiguous()?
                    .reshape((n, c.hidden))?;
                attn_rows.push(out);
                row += n;
            }
            let attn = if attn_rows.len() == 1 {
                attn_rows[0].clone()
            } else {
                Tensor::cat(&attn_rows, 0)?
            };
            x = (x + layer.wo.forward(&attn)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps as f32)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(gate * up)?)?)?;
        }
        let mut last_rows = Vec::new();
        let mut row = 0;
        for entry in batch.iter_mut() {
            let n = entry.tokens.len();
            entry.cache.len += n;
            row += n;
            if entry.want_logits && n > 0 {
                last_rows.push((row - 1) as u32);
            }
        }
        if last_rows.is_empty() {
            return Ok(None);
        }
        let rows = last_rows.len();
        let last_rows = Tensor::from_vec(last_rows, rows, &self.device)?;
        let x = x.index_select(&last_rows, 0)?;
        let x = candle_nn::ops::rms_norm(&x, &self.output_norm, c.rms_eps as f32)?;
        let logits = self.output.forward(&x)?;
        Ok(Some(logits.to_dtype(DType::F32)?))
    }
}

/// One sequence's part of a step.
pub struct BatchEntry<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut SeqKv,
    /// Whether the step should return logits after this entry's last token (a prefill chunk
    /// that does not end the prompt needs none).
    pub want_logits: bool,
}

/// `(n, start + n)`: 0 where query `i` (at position `start + i`) may see key `j`, -inf after.
fn causal_mask(n: usize, start: usize, device: &Device) -> candle_core::Result<Tensor> {
    let len = start + n;
    let mut mask = vec![0f32; n * len];
    for i in 0..n {
        for value in &mut mask[i * len + start + i + 1..(i + 1) * len] {
            *value = f32::NEG_INFINITY;
        }
    }
    Tensor::from_vec(mask, (n, len), device)
}

fn rope_tables(
    head_dim: usize,
    base: f32,
    context_length: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((context_length, 1))?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// One sequence's KV cache: per layer, keys and values as `(capacity, kv_heads * head_dim)`,
/// token-major, so appending a token and copying a prefix out are contiguous copies.
pub struct SeqKv {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    capacity: usize,
    /// Tokens computed so far.
    len: usize,
    kv_dim: usize,
    kv_heads: usize,
    context_length: usize,
    device: Device,
}

/// Growth granularity of a sequence cache, in tokens.
const KV_GROWTH: usize = 64;

impl SeqKv {
    fn new(config: &LlamaConfig, tokens: usize, device: &Device) -> Result<Self, ModelError> {
        let capacity = tokens.max(1).next_multiple_of(KV_GROWTH);
        let kv_dim = config.kv_dim();
        let zeros = || Tensor::zeros((capacity, kv_dim), DType::F32, device);
        let mut keys = Vec::with_capacity(config.n_layer);
        let mut values = Vec::with_capacity(config.n_layer);
        for _ in 0..config.n_layer {
            keys.push(zeros()?);
            values.push(zeros()?);
        }
        Ok(SeqKv {
            keys,
            values,
            capacity,
            len: 0,
            kv_dim,
            kv_heads: config.n_kv_head,
            context_length: config.context_length,
            device: device.clone(),
        })
    }

    /// Tokens whose keys and values are in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The model's context length: the most tokens this cache may hold.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Forgets everything after the first `len` tokens.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn reserve(&mut self, needed: usize) -> candle_core::Result<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed.max(self.capacity * 2).next_multiple_of(KV_GROWTH);
        for buffers in [&mut self.keys, &mut self.values] {
            for buffer in buffers.iter_mut() {
                let grown = Tensor::zeros((capacity, self.kv_dim), DType::F32, &self.device)?;
                if self.len > 0 {
                    grown.slice_set(&buffer.narrow(0, 0, self.len)?.contiguous()?, 0, 0)?;
                }
                *buffer = grown;
            }
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Stores `n` tokens' keys and values (`(n, kv_dim)`) of `layer` at positions
    /// `start..start + n`.
    fn write(
        &mut self,
        layer: usize,
        keys: &Tensor,
        values: &Tensor,
        start: usize,
    ) -> candle_core::Result<()> {
        let n = keys.dim(0)?;
        self.reserve(start + n)?;
        self.keys[layer].slice_set(&keys.contiguous()?, 0, start)?;
        self.values[layer].slice_set(&values.contiguous()?, 0, start)?;
        Ok(())
    }

    /// The first `len` tokens of `layer` as `(len, kv_heads, head_dim)` keys and values.
    fn view(&self, layer: usize, len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let shape = (len, self.kv_heads, self.kv_dim / self.kv_heads);
        Ok((
            self.keys[layer].narrow(0, 0, len)?.reshape(shape)?,
            self.values[layer].narrow(0, 0, len)?.reshape(shape)?,
        ))
    }

    /// Copies tokens `start..start + n` of every layer out, as one `(layers, 2, n, kv_dim)`
    /// tensor (a prefix cache block).
    pub fn export(&self, start: usize, n: usize) -> Result<Tensor, ModelError> {
        let mut parts = Vec::with_capacity(self.keys.len() * 2);
        for (k, v) in self.keys.iter().zip(&self.values) {
            parts.push(k.narrow(0, start, n)?);
            parts.push(v.narrow(0, start, n)?);
        }
        let layers = self.keys.len();
        Ok(Tensor::stack(&parts, 0)?.reshape((layers, 2, n, self.kv_dim))?)
    }

    /// Writes a block made by [`Self::export`] at positions `start..` and makes the cache that
    /// long (blocks are imported in order, from position 0).
    pub fn import(&mut self, start: usize, block: &Tensor) -> Result<(), ModelError> {
        let (_, _, n, _) = block.dims4()?;
        self.reserve(start + n)?;
        for layer in 0..self.keys.len() {
            let kv = block.get(layer)?;
            self.keys[layer].slice_set(&kv.get(0)?.contiguous()?, 0, start)?;
            self.values[layer].slice_set(&kv.get(1)?.contiguous()?, 0, start)?;
        }
        self.len = start + n;
        Ok(())
    }
}

/// The last dimension's softmax-free top entry, for greedy decoding without a copy of the
/// logits (`(vocab,)` tensor).
pub fn argmax(logits: &Tensor) -> Result<u32, ModelError> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
