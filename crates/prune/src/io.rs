//! Checkpoints: a model's parameters, its mask and extra tensors in one safetensors file.
//!
//! Layout (all tensors `F32`, little-endian, as safetensors prescribes):
//! * `<param name>`: every parameter of the store (e.g. `conv1.weight`);
//! * `mask.<param name>`: the 0/1 mask of each parameter that has one (dense ones are absent);
//! * `extra.<name>`: caller-defined tensors (optimizer state, step counters, ...).
//!
//! The header's metadata holds `format = sparsedp-params-v1`. Files are written atomically: to a
//! temporary file in the same directory, flushed to disk (`fsync`), then renamed over the target,
//! so a crash leaves either the old or the new checkpoint, never a torn one.
//!
//! Loading validates everything (names, dtypes, shapes, 0/1 masks) before touching the store: on
//! any error the store is unchanged.

use crate::error::{PruneError, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sparsedp_nn::{ParamMask, ParamStore};
use sparsedp_tensor::Tensor;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of mask tensors.
pub const MASK_PREFIX: &str = "mask.";
/// Prefix of extra tensors.
pub const EXTRA_PREFIX: &str = "extra.";
/// Metadata value of the `format` key.
pub const FORMAT: &str = "sparsedp-params-v1";

/// What [`load_params_into`] returns besides the loaded parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedParams {
    /// The stored mask (`None` if the file has no `mask.*` tensor); parameters without a stored
    /// mask are dense.
    pub mask: Option<ParamMask>,
    /// The extra tensors, without their `extra.` prefix, sorted by name.
    pub extra: Vec<(String, Tensor)>,
    /// The caller's metadata given to [`save_params_with_metadata`] (without `format`).
    pub metadata: HashMap<String, String>,
}

fn io_err(path: &Path, source: std::io::Error) -> PruneError {
    PruneError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> PruneError {
    PruneError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn check_names(store: &ParamStore) -> Result<()> {
    if let Some((_, p)) = store
        .iter()
        .find(|(_, p)| p.name.starts_with(MASK_PREFIX) || p.name.starts_with(EXTRA_PREFIX))
    {
        return Err(PruneError::InvalidConfig(format!(
            "parameter name '{}' uses a reserved checkpoint prefix ('{MASK_PREFIX}' or \
             '{EXTRA_PREFIX}')",
            p.name
        )));
    }
    Ok(())
}

fn le_bytes(t: &Tensor) -> Vec<u8> {
    t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Saves every parameter of `store`, the non-dense entries of `mask` (as `mask.<name>`) and
/// `extra` (as `extra.<name>`) to `path`, atomically (see the module docs).
///
/// Errors if the mask covers another number of tensors, an extra name repeats, a parameter name
/// starts with a reserved prefix, or on I/O failure.
pub fn save_params(
    path: &Path,
    store: &ParamStore,
    mask: Option<&ParamMask>,
    extra: &[(String, Tensor)],
) -> Result<()> {
    save_params_with_metadata(path, store, mask, extra, &HashMap::new())
}

/// [`save_params`] plus string metadata stored in the file's header (e.g. a trainer's step and
/// accountant history); the key `format` is reserved.
pub fn save_params_with_metadata(
    path: &Path,
    store: &ParamStore,
    mask: Option<&ParamMask>,
    extra: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    check_names(store)?;
    if metadata.contains_key("format") {
        return Err(PruneError::InvalidConfig(
            "the metadata key 'format' is reserved".to_string(),
        ));
    }
    if let Some(m) = mask
        && m.len() != store.len()
    {
        return Err(PruneError::InvalidConfig(format!(
            "mask covers {} parameters, the store has {}",
            m.len(),
            store.len()
        )));
    }
    // (name, shape, bytes)
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (id, p) in store.iter() {
        entries.push((p.name.clone(), p.value.shape().to_vec(), le_bytes(&p.value)));
        if let Some(m) = mask.and_then(|m| m.get(id)) {
            entries.push((
                format!("{MASK_PREFIX}{}", p.name),
                m.shape().to_vec(),
                le_bytes(m),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (name, t) in extra {
        if !seen.insert(name.as_str()) {
            return Err(PruneError::InvalidConfig(format!(
                "extra tensor name '{name}' appears twice"
            )));
        }
        entries.push((
            format!("{EXTRA_PREFIX}{name}"),
            t.shape().to_vec(),
            le_bytes(t),
        ));
    }
    let views = entries
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.as_str(), v))
                .map_err(|e| format_err(path, format!("tensor '{n}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = metadata.clone();
    meta.insert("format".to_string(), FORMAT.to_string());
    let bytes =
        safetensors::serialize(views, Some(meta)).map_err(|e| format_err(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, `fsync`ed, then
/// renamed over `path`; the directory is synced afterwards where the platform allows it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| format_err(path, "the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io_err(path, e))
    })();
    if result.is_err() {
        // Best effort: do not leave the temporary file behind.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Persist the rename itself (directories cannot be opened for syncing on every platform).
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn to_tensor(path: &Path, name: &str, v: &TensorView<'_>) -> Result<Tensor> {
    if v.dtype() != Dtype::F32 {
        return Err(format_err(
            path,
            format!("tensor '{name}' has dtype {:?}, expected F32", v.dtype()),
        ));
    }
    let data: Vec<f32> = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(data, v.shape()).map_err(|e| format_err(path, format!("tensor '{name}': {e}")))
}

/// Loads a checkpoint written by [`save_params`] into `store`: every parameter must be present
/// with its exact shape, and every tensor in the file must be a parameter, `mask.<parameter>` or
/// `extra.<name>`. Returns the mask (validated against the store) and the extra tensors.
///
/// Errors ([`PruneError::MissingTensor`], [`PruneError::UnexpectedTensor`],
/// [`PruneError::ShapeMismatch`], [`PruneError::Format`], [`PruneError::Io`], or a mask that
/// is not 0/1) leave `store` unchanged.
pub fn load_params_into(path: &Path, store: &mut ParamStore) -> Result<LoadedParams> {
    check_names(store)?;
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, e.to_string()))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| format_err(path, e.to_string()))?;
    let mut metadata = header.metadata().clone().unwrap_or_default();
    metadata.remove("format");
    let mut values: Vec<Option<Tensor>> = vec![None; store.len()];
    let mut masks: Vec<Option<Tensor>> = vec![None; store.len()];
    let mut any_mask = false;
    let mut extra = Vec::new();
    let mut names: Vec<(String, TensorView<'_>)> = st.tensors();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in names {
        if let Some(rest) = name.strip_prefix(EXTRA_PREFIX) {
            extra.push((rest.to_string(), to_tensor(path, &name, &view)?));
            continue;
        }
        let (target, pname, is_mask) = match name.strip_prefix(MASK_PREFIX) {
            Some(rest) => (&mut masks, rest, true),
            None => (&mut values, name.as_str(), false),
        };
        let Some(id) = store.find(pname) else {
            return Err(PruneError::UnexpectedTensor {
                path: path.to_path_buf(),
                name: name.clone(),
            });
        };
        let expected = store.value(id).shape();
        if view.shape() != expected {
            return Err(PruneError::ShapeMismatch {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: expected.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        target[id.0] = Some(to_tensor(path, &name, &view)?);
        any_mask |= is_mask;
    }
    if let Some((_, p)) = store.iter().find(|(id, _)| values[id.0].is_none()) {
        return Err(PruneError::MissingTensor {
            path: path.to_path_buf(),
            name: p.name.clone(),
        });
    }
    let mask = if any_mask {
        Some(ParamMask::new(store, masks)?)
    } else {
        None
    };
    for ((_, p), v) in store.iter_mut().zip(values) {
        if let Some(v) = v {
            p.value = v;
        }
    }
    Ok(LoadedParams {
        mask,
        extra,
        metadata,
    })
}
