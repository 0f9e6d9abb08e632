//! Checkpoints and model files: safetensors, written atomically.
//!
//! A checkpoint is one file holding the weights, the optimiser state, the EMA, the pruning mask
//! and, in the safetensors metadata, the step, the accountant's history and the noise
//! multiplier. Every other piece of state (sampling, augmentation, selection and noise
//! randomness) is derived from `(seed, step)`, so this file is all `--resume` needs to continue
//! bit for bit. It is written to a temporary file in the same directory, flushed to disk and
//! renamed over the old one: a crash leaves either the old or the new checkpoint, never half of
//! one.

use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, TensorView};
use sparsedp_tensor::Tensor;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Named tensors plus string metadata, as stored in a safetensors file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorFile {
    /// Tensors in file order.
    pub tensors: Vec<(String, Tensor)>,
    /// Metadata (`__metadata__`).
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Writes the file atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let b = t.to_vec().iter().flat_map(|v| v.to_le_bytes()).collect();
                (n.clone(), b, t.shape().to_vec())
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(n, b, s)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
            .collect::<Result<Vec<_>>>()?;
        let data = safetensors::serialize(views, Some(self.metadata.clone()))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
        let tmp = path.with_extension("safetensors.tmp");
        {
            let mut f =
                File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            f.write_all(&data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
        if let Ok(d) = File::open(dir) {
            // Persist the rename itself; not every platform can sync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads a safetensors file of f32 tensors.
    pub fn read(path: &Path) -> Result<Self> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&data)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&data)?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let mut tensors = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        names.sort();
        for name in names {
            let view = st.tensor(&name)?;
            if view.dtype() != Dtype::F32 {
                bail!(
                    "{}: tensor {name} is {:?}, expected F32",
                    path.display(),
                    view.dtype()
                );
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.push((name, Tensor::from_vec(values, view.shape())?));
        }
        Ok(TensorFile { tensors, metadata })
    }
}
