//! The in-memory dataset: images as `u8`, N x C x H x W, with labels.

use crate::error::{DataError, Result};
use std::path::PathBuf;

/// An image classification dataset held in memory as unsigned bytes.
///
/// Images are stored contiguously, N x C x H x W (CHW per image, planes row-major), exactly as the
/// CIFAR binaries store them; MNIST-like sets have C = 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    name: String,
    shape: [usize; 3],
    classes: usize,
    images: Vec<u8>,
    labels: Vec<u8>,
    coarse_labels: Option<Vec<u8>>,
}

impl Dataset {
    /// Builds a dataset from raw parts, checking that they agree.
    ///
    /// `shape` is `[channels, height, width]` of one image.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when a dimension or `classes` is zero, `classes` exceeds 256,
    /// `images.len()` is not `labels.len() * C * H * W`, `coarse_labels` has another length, or a
    /// label is `>= classes`.
    pub fn new(
        name: impl Into<String>,
        shape: [usize; 3],
        classes: usize,
        images: Vec<u8>,
        labels: Vec<u8>,
        coarse_labels: Option<Vec<u8>>,
    ) -> Result<Self> {
        let name = name.into();
        let invalid = |detail: String| DataError::InvalidArgument {
            name: "dataset",
            detail,
        };
        if shape.contains(&0) || classes == 0 || classes > 256 {
            return Err(invalid(format!(
                "{name}: shape {shape:?} with {classes} classes"
            )));
        }
        let per = shape.iter().product::<usize>();
        if labels.len().checked_mul(per) != Some(images.len()) {
            return Err(invalid(format!(
                "{name}: {} image bytes for {} labels of {shape:?}",
                images.len(),
                labels.len()
            )));
        }
        if let Some(c) = &coarse_labels
            && c.len() != labels.len()
        {
            return Err(invalid(format!(
                "{name}: {} coarse labels for {} labels",
                c.len(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= classes)
        {
            return Err(DataError::BadLabel {
                path: PathBuf::from(&name),
                index: i,
                label: l,
                classes,
            });
        }
        Ok(Self {
            name,
            shape,
            classes,
            images,
            labels,
            coarse_labels,
        })
    }

    /// A short name, e.g. `mnist/train`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the dataset has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[channels, height, width]` of one image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Bytes (= values) per image: C * H * W.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of classes (labels lie in `0..classes`).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All image bytes, N x C x H x W.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// CIFAR-100's coarse labels (`None` for other datasets).
    pub fn coarse_labels(&self) -> Option<&[u8]> {
        self.coarse_labels.as_deref()
    }

    /// Image `i` as C x H x W bytes, or `None` when `i` is out of range.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.image_len();
        let start = i.checked_mul(n)?;
        self.images.get(start..start.checked_add(n)?)
    }

    /// Label of example `i`, or `None` when `i` is out of range.
    pub fn label(&self, i: usize) -> Option<u8> {
        self.labels.get(i).copied()
    }

    /// A copy with the CIFAR-100 coarse labels (20 classes) as the labels; `None` when the dataset
    /// has no coarse labels.
    pub fn with_coarse_labels(&self) -> Option<Self> {
        let coarse = self.coarse_labels.clone()?;
        Some(Self {
            name: format!("{}-coarse", self.name),
            shape: self.shape,
            classes: 20,
            images: self.images.clone(),
            labels: coarse,
            coarse_labels: None,
        })
    }

    /// The examples at `indices`, in that order (repeats allowed), as a new dataset.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] naming the first index out of range.
    pub fn subset(&self, indices: &[usize], name: impl Into<String>) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::InvalidArgument {
                name: "indices",
                detail: format!(
                    "index {bad} out of range for {} ({} examples)",
                    self.name,
                    self.len()
                ),
            });
        }
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(&self.images[i * n..(i + 1) * n]);
        }
        Ok(Self {
            name: name.into(),
            shape: self.shape,
            classes: self.classes,
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            coarse_labels: self
                .coarse_labels
                .as_ref()
                .map(|c| indices.iter().map(|&i| c[i]).collect()),
        })
    }

    /// The first `per_class` examples of each class, in file order, as sorted indices: the
    /// deterministic, class-balanced selection rule of the bundled MNIST subset.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] naming the first class with fewer than `per_class` examples.
    pub fn class_balanced_indices(&self, per_class: usize) -> Result<Vec<usize>> {
        let mut taken = vec![0usize; self.classes];
        let mut out = Vec::with_capacity(per_class * self.classes);
        for (i, &l) in self.labels.iter().enumerate() {
            let t = &mut taken[usize::from(l)];
            if *t < per_class {
                *t += 1;
                out.push(i);
            }
        }
        if let Some((class, &have)) = taken.iter().enumerate().find(|&(_, &t)| t < per_class) {
            return Err(DataError::InvalidArgument {
                name: "per_class",
                detail: format!(
                    "{per_class}, but {} has only {have} of class {class}",
                    self.name
                ),
            });
        }
        Ok(out)
    }

    /// Number of examples per class, indexed by label.
    pub fn label_histogram(&self) -> Vec<usize> {
        let mut h = vec![0usize; self.classes];
        for &l in &self.labels {
            h[usize::from(l)] += 1;
        }
        h
    }

    /// Mean of each channel over all pixels of all images, in [0, 1] units (pixel / 255).
    ///
    /// This reads every image: computing it on private data and using it for normalisation would
    /// leak information outside the DP guarantee. It exists to check the published constants in
    /// [`crate::Normalize`], which are what training uses.
    pub fn channel_means(&self) -> Vec<f64> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let mut sums = vec![0u64; c];
        for image in self.images.chunks_exact(c * plane) {
            for (ch, p) in image.chunks_exact(plane).enumerate() {
                sums[ch] += p.iter().map(|&v| u64::from(v)).sum::<u64>();
            }
        }
        let count = (self.len() * plane) as f64;
        sums.iter().map(|&s| s as f64 / 255.0 / count).collect()
    }
}
