//! The wgpu backend: every kernel of the CPU backend as a WGSL compute shader.
//!
//! # Model
//! One process-wide [`Gpu`] context (instance, adapter, device, queue) is created lazily on first
//! use. Tensors on [`Device::Wgpu`](crate::Device::Wgpu) own a [`GpuBuffer`]; kernels read and
//! write device buffers only, so data crosses the bus at explicit boundaries alone: uploads in
//! [`Tensor::to_device`](crate::Tensor::to_device), downloads in `to_vec` / `try_to_vec`
//! (metrics, checkpoints, tests).
//!
//! Dispatches are *recorded*, not submitted: every kernel launch appends a compute pass to one
//! pending command encoder, which is submitted when a download needs the results or when
//! [`MAX_PENDING`] passes have accumulated. Compute pipelines (one per kernel entry point) are
//! compiled once and cached; bind groups reference the buffers of a single launch and are built
//! per launch (they are cheap: a handful of buffer bindings).
//!
//! # Kernel conventions
//! Every shader declares `@binding(0)` as a read-only `array<u32>` of parameters (sizes,
//! strides, op codes; floats as bit patterns) followed by its data buffers. 1-D kernels use
//! workgroups of 256 and a 2-D grid of workgroups (`x` at most 65,535) so that any element
//! count is reachable; see [`grid`].
//!
//! # Failure
//! A buffer larger than the adapter allows is refused before launch with
//! [`TensorError::Device`] (ops whose temporaries could exceed it split the work instead, e.g.
//! convolutions process examples in chunks). Validation errors and device loss are recorded by
//! callbacks; the next download reports them as [`TensorError::Device`] rather than returning
//! stale numbers.

pub(crate) mod conv2d;
pub(crate) mod elementwise;
pub(crate) mod group_norm;
pub(crate) mod index;
pub(crate) mod matmul;
pub(crate) mod pool;
pub(crate) mod random;
pub(crate) mod reduce;
pub(crate) mod softmax;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use wgpu::util::DeviceExt;

use crate::error::{Result, TensorError};
use crate::ops::conv2d::Conv2dGeometry;
use crate::ops::elementwise::BinaryOp;
use crate::ops::group_norm::GroupNormGeometry;
use crate::ops::matmul::MatmulSpec;
use crate::ops::pool::Pool2dGeometry;
use crate::ops::reduce::ReduceOp;
use crate::ops::unary::UnaryOp;

/// Submit the pending encoder after this many recorded compute passes, so that command memory
/// stays bounded in long chains of kernels that are never downloaded.
pub(crate) const MAX_PENDING: usize = 512;

/// Threads per workgroup of the 1-D kernels (must match `@workgroup_size(256)` in the shaders).
pub(crate) const WG: u32 = 256;

/// How a shader binding is accessed; must match the `var<storage, ...>` declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

/// One compute entry point of a WGSL file.
#[derive(Debug)]
pub(crate) struct Kernel {
    /// Cache key, unique across the crate (e.g. `"elementwise::binary"`).
    pub name: &'static str,
    /// The WGSL source (`include_str!` of the `.wgsl` file beside the launcher).
    pub source: &'static str,
    /// Entry point name.
    pub entry: &'static str,
    /// Access of bindings `1..`, in order (binding 0 is always the parameter array).
    pub bindings: &'static [Access],
}

/// A device buffer of `len` `f32` values (allocated with at least 4 bytes: wgpu rejects empty
/// bindings).
pub(crate) struct GpuBuffer {
    pub(crate) buf: wgpu::Buffer,
    pub(crate) len: usize,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} f32)", self.len)
    }
}

impl Clone for GpuBuffer {
    /// A device-side copy (recorded in the pending encoder, no host round trip).
    fn clone(&self) -> Self {
        let gpu = gpu_or_lost();
        let out = gpu.alloc(self.len);
        gpu.copy(&self.buf, 0, &out.buf, 0, self.len);
        out
    }
}

impl PartialEq for GpuBuffer {
    /// Compares values (downloads both buffers); used by tests and `Tensor: PartialEq`.
    fn eq(&self, other: &Self) -> bool {
        let gpu = gpu_or_lost();
        self.len == other.len
            && gpu
                .download(self)
                .ok()
                .is_some_and(|a| gpu.download(other).ok() == Some(a))
    }
}

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    passes: usize,
}

/// The process-wide wgpu context.
pub(crate) struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pipelines: Mutex<HashMap<&'static str, Arc<Pipeline>>>,
    pending: Mutex<Pending>,
    /// First validation error or device loss, reported by the next download.
    fault: Arc<Mutex<Option<String>>>,
}

static GPU: OnceLock<std::result::Result<Gpu, String>> = OnceLock::new();

/// Adapter kinds in order of preference; lavapipe-like CPU adapters come last because the
/// crate's own CPU backend is faster than a software Vulkan driver.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Whether an adapter type is real GPU hardware ([`crate::Device::best`] only picks those).
pub(crate) fn is_hardware(t: wgpu::DeviceType) -> bool {
    matches!(
        t,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
    )
}

fn init() -> std::result::Result<Gpu, String> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    if adapters.is_empty() {
        return Err(
            "no wgpu adapter found (install a Vulkan, Metal or DX12 driver; on Linux \
                    without a GPU, Mesa's lavapipe: apt install mesa-vulkan-drivers libvulkan1)"
                .into(),
        );
    }
    // Optional name filter, e.g. SPARSEDP_WGPU_ADAPTER=llvmpipe or =H100.
    if let Ok(want) = std::env::var("SPARSEDP_WGPU_ADAPTER") {
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        adapters.retain(|a| {
            a.get_info()
                .name
                .to_lowercase()
                .contains(&want.to_lowercase())
        });
        if adapters.is_empty() {
            return Err(format!(
                "SPARSEDP_WGPU_ADAPTER={want:?} matches none of the adapters {names:?}"
            ));
        }
    }
    adapters.sort_by_key(|a| rank(a.get_info().device_type));
    let adapter = adapters.swap_remove(0);
    let info = adapter.get_info();
    // Ask for everything the adapter offers: storage bindings of the default 128 MiB would
    // force needless splitting on GPUs that address gigabytes.
    let limits = adapter.limits();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("sparsedp"),
        required_features: wgpu::Features::empty(),
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|e| format!("wgpu adapter {:?} refused a device: {e}", info.name))?;
    let fault = Arc::new(Mutex::new(None::<String>));
    let f = fault.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        let mut slot = f.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| format!("wgpu error: {e}"));
    }));
    let f = fault.clone();
    device.set_device_lost_callback(move |reason, msg| {
        let mut slot = f.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| format!("wgpu device lost ({reason:?}): {msg}"));
    });
    Ok(Gpu {
        device,
        queue,
        info,
        limits,
        pipelines: Mutex::new(HashMap::new()),
        pending: Mutex::new(Pending {
            encoder: None,
            passes: 0,
        }),
        fault,
    })
}

/// The context, or why there is none (no adapter, device refused).
pub(crate) fn gpu() -> Result<&'static Gpu> {
    match GPU.get_or_init(init) {
        Ok(g) => Ok(g),
        Err(e) => Err(TensorError::Device {
            op: "wgpu",
            reason: e.clone(),
        }),
    }
}

/// The context for code paths that only run on tensors that already live on the GPU (so the
/// context exists).
pub(crate) fn gpu_or_lost() -> &'static Gpu {
    match GPU.get() {
        Some(Ok(g)) => g,
        _ => unreachable!("a wgpu tensor exists only after the wgpu context was created"),
    }
}

/// Adapter description for logs and benchmarks, e.g. `"NVIDIA H100 80GB HBM3 (Vulkan,
/// DiscreteGpu)"`.
pub(crate) fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// A 2-D grid of workgroups covering `groups` workgroups: `x` is capped at the per-dimension
/// limit and shaders recover the linear id as `wid.y * nwg.x + wid.x`.
pub(crate) fn grid(groups: usize) -> [u32; 3] {
    const MAX: usize = 65_535;
    let groups = groups.max(1);
    if groups <= MAX {
        [groups as u32, 1, 1]
    } else {
        [MAX as u32, groups.div_ceil(MAX) as u32, 1]
    }
}

/// Workgroups of [`WG`] threads for `n` threads.
pub(crate) fn grid_1d(n: usize) -> [u32; 3] {
    grid(n.div_ceil(WG as usize))
}

/// Converts a size or stride to the `u32` the shaders index with. Buffers are capped at
/// `max_storage_buffer_binding_size` (< 4 GiB), so every element index fits.
pub(crate) fn u(v: usize) -> u32 {
    u32::try_from(v).expect("sizes are checked against the adapter limits before launch")
}

impl Gpu {
    /// The adapter's name, backend and type.
    pub(crate) fn adapter(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Largest buffer, in `f32` elements, that one binding may hold.
    pub(crate) fn max_elems(&self) -> usize {
        let bytes = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        (bytes / 4).min(u32::MAX as u64) as usize
    }

    /// Errors unless `elems` values fit in one binding.
    pub(crate) fn check_fits(&self, op: &'static str, elems: usize) -> Result<()> {
        if elems > self.max_elems() {
            return Err(TensorError::Device {
                op,
                reason: format!(
                    "result of {elems} values ({} MiB) exceeds the adapter's largest storage \
                     binding ({} MiB on {}); split the batch",
                    (elems * 4) >> 20,
                    (self.max_elems() * 4) >> 20,
                    self.info.name
                ),
            });
        }
        self.check_fault(op)
    }

    /// Reports a recorded validation error or device loss.
    pub(crate) fn check_fault(&self, op: &'static str) -> Result<()> {
        match self
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(msg) => Err(TensorError::Device {
                op,
                reason: msg.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A zero-filled buffer of `len` values (wgpu zero-initialises new buffers).
    pub(crate) fn alloc(&self, len: usize) -> GpuBuffer {
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuBuffer { buf, len }
    }

    /// Uploads host values into a new buffer.
    pub(crate) fn upload(&self, data: &[f32]) -> GpuBuffer {
        GpuBuffer {
            buf: self.upload_bytes(bytemuck::cast_slice(data)),
            len: data.len(),
        }
    }

    /// Uploads `u32` values (indices, class labels) into a new read-only buffer.
    pub(crate) fn upload_u32(&self, data: &[u32]) -> wgpu::Buffer {
        self.upload_bytes(bytemuck::cast_slice(data))
    }

    fn upload_bytes(&self, bytes: &[u8]) -> wgpu::Buffer {
        // Mapped at creation: the contents are in place before any later command can read
        // them, independent of the order in which queued writes and encoders are submitted.
        let padded;
        let contents = if bytes.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            bytes
        };
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    fn with_encoder(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let enc = p.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        f(enc);
        p.passes += 1;
        if p.passes >= MAX_PENDING {
            let enc = p.encoder.take().expect("just inserted");
            p.passes = 0;
            self.queue.submit([enc.finish()]);
        }
    }

    /// Submits everything recorded so far.
    pub(crate) fn flush(&self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(enc) = p.encoder.take() {
            p.passes = 0;
            self.queue.submit([enc.finish()]);
        }
    }

    /// Records a copy of `len` values.
    pub(crate) fn copy(
        &self,
        src: &wgpu::Buffer,
        src_elem: usize,
        dst: &wgpu::Buffer,
        dst_elem: usize,
        len: usize,
    ) {
        if len == 0 {
            return;
        }
        self.with_encoder(|enc| {
            enc.copy_buffer_to_buffer(
                src,
                (src_elem * 4) as u64,
                dst,
                (dst_elem * 4) as u64,
                Some((len * 4) as u64),
            )
        });
    }

    fn pipeline(&self, k: &Kernel) -> Arc<Pipeline> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(k.name) {
            return p.clone();
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.name),
                source: wgpu::ShaderSource::Wgsl(k.source.into()),
            });
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![storage(0, true)];
        for (i, a) in k.bindings.iter().enumerate() {
            entries.push(storage(i as u32 + 1, *a == Access::Read));
        }
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(k.name),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(k.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.name),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(k.entry),
                compilation_options: Default::default(),
                cache: None,
            });
        let p = Arc::new(Pipeline { pipeline, layout });
        cache.insert(k.name, p.clone());
        p
    }

    /// Records one launch of `k` with `params` at binding 0 and `bufs` at bindings `1..`.
    pub(crate) fn dispatch(
        &self,
        k: &Kernel,
        params: &[u32],
        bufs: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        debug_assert_eq!(bufs.len(), k.bindings.len(), "{}: binding count", k.name);
        let p = self.pipeline(k);
        let params = self.upload_u32(params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: params.as_entire_binding(),
        }];
        for (i, b) in bufs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.layout,
            entries: &entries,
        });
        self.with_encoder(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(k.name),
                timestamp_writes: None,
            });
            pass.set_pipeline(&p.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
    }

    /// Waits for all submitted work.
    pub(crate) fn sync(&self) -> Result<()> {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| TensorError::Device {
                op: "wgpu sync",
                reason: e.to_string(),
            })?;
        self.check_fault("wgpu sync")
    }

    /// Copies a buffer's values to the host (submits pending work and waits for it).
    pub(crate) fn download(&self, b: &GpuBuffer) -> Result<Vec<f32>> {
        if b.len == 0 {
            return self.check_fault("download").map(|()| Vec::new());
        }
        let bytes = (b.len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy(&b.buf, 0, &staging, 0, b.len);
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| TensorError::Device {
                op: "download",
                reason: e.to_string(),
            })?;
        let mapped = rx.recv().map_err(|e| TensorError::Device {
            op: "download",
            reason: e.to_string(),
        })?;
        mapped.map_err(|e| TensorError::Device {
            op: "download",
            reason: e.to_string(),
        })?;
        self.check_fault("download")?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| TensorError::Device {
                op: "download",
                reason: e.to_string(),
            })?;
        let out: Vec<f32> = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}

/// Bit pattern of an `f32` parameter (shaders read it back with `bitcast<f32>`).
pub(crate) fn f(v: f32) -> u32 {
    v.to_bits()
}

/// The wgpu backend behind the same kernel list as the CPU backend: the trait impl makes the
/// compiler check that every kernel exists, with the same geometry types.
#[allow(clippy::too_many_arguments)]
impl crate::backend::BackendOps for Gpu {
    type Buffer = GpuBuffer;

    fn permute(&self, x: &GpuBuffer, shape: &[usize], perm: &[usize]) -> GpuBuffer {
        Gpu::permute(self, x, shape, perm)
    }
    fn binary(
        &self,
        op: BinaryOp,
        a: &GpuBuffer,
        a_shape: &[usize],
        b: &GpuBuffer,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> GpuBuffer {
        Gpu::binary(self, op, a, a_shape, b, b_shape, out_shape)
    }
    fn scalar(&self, op: BinaryOp, x: &GpuBuffer, s: f32, scalar_first: bool) -> GpuBuffer {
        Gpu::scalar(self, op, x, s, scalar_first)
    }
    fn axpy(&self, a: &mut GpuBuffer, alpha: f32, b: &GpuBuffer) {
        Gpu::axpy(self, a, alpha, b)
    }
    fn unary(&self, op: UnaryOp, x: &GpuBuffer) -> GpuBuffer {
        Gpu::unary(self, op, x)
    }
    fn unary_backward(&self, op: UnaryOp, x: &GpuBuffer, grad: &GpuBuffer) -> GpuBuffer {
        Gpu::unary_backward(self, op, x, grad)
    }
    fn reduce_axis(
        &self,
        op: ReduceOp,
        x: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        Gpu::reduce_axis(self, op, x, outer, len, inner)
    }
    fn max_axis_backward(
        &self,
        x: &GpuBuffer,
        grad: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        Gpu::max_axis_backward(self, x, grad, outer, len, inner)
    }
    fn row_sq_norms(&self, x: &GpuBuffer, rows: usize) -> GpuBuffer {
        Gpu::row_sq_norms(self, x, rows)
    }
    fn matmul(&self, a: &GpuBuffer, b: &GpuBuffer, spec: MatmulSpec) -> GpuBuffer {
        Gpu::matmul(self, a, b, spec)
    }
    fn conv2d_forward(
        &self,
        x: &GpuBuffer,
        w: &GpuBuffer,
        bias: Option<&GpuBuffer>,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        Gpu::conv2d_forward(self, x, w, bias, g)
    }
    fn conv2d_backward_input(
        &self,
        dy: &GpuBuffer,
        w: &GpuBuffer,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        Gpu::conv2d_backward_input(self, dy, w, g)
    }
    fn conv2d_backward_weight(
        &self,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        Gpu::conv2d_backward_weight(self, x, dy, g)
    }
    fn conv2d_per_example_weight_grad(
        &self,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        g: &Conv2dGeometry,
    ) -> GpuBuffer {
        Gpu::conv2d_per_example_weight_grad(self, x, dy, g)
    }
    fn im2col(&self, x: &GpuBuffer, g: &Conv2dGeometry) -> GpuBuffer {
        Gpu::im2col(self, x, g)
    }
    fn col2im(&self, cols: &GpuBuffer, g: &Conv2dGeometry) -> GpuBuffer {
        Gpu::col2im(self, cols, g)
    }
    fn max_pool2d(&self, x: &GpuBuffer, g: &Pool2dGeometry) -> GpuBuffer {
        Gpu::max_pool2d(self, x, g)
    }
    fn max_pool2d_backward(&self, x: &GpuBuffer, dy: &GpuBuffer, g: &Pool2dGeometry) -> GpuBuffer {
        Gpu::max_pool2d_backward(self, x, dy, g)
    }
    fn avg_pool2d(&self, x: &GpuBuffer, g: &Pool2dGeometry) -> GpuBuffer {
        Gpu::avg_pool2d(self, x, g)
    }
    fn avg_pool2d_backward(&self, dy: &GpuBuffer, g: &Pool2dGeometry) -> GpuBuffer {
        Gpu::avg_pool2d_backward(self, dy, g)
    }
    fn group_norm(
        &self,
        x: &GpuBuffer,
        gamma: Option<&GpuBuffer>,
        beta: Option<&GpuBuffer>,
        g: &GroupNormGeometry,
    ) -> (GpuBuffer, GpuBuffer, GpuBuffer) {
        Gpu::group_norm(self, x, gamma, beta, g)
    }
    fn group_norm_backward_input(
        &self,
        dy: &GpuBuffer,
        xhat: &GpuBuffer,
        rstd: &GpuBuffer,
        gamma: Option<&GpuBuffer>,
        g: &GroupNormGeometry,
    ) -> GpuBuffer {
        Gpu::group_norm_backward_input(self, dy, xhat, rstd, gamma, g)
    }
    fn group_norm_affine_grads(
        &self,
        dy: &GpuBuffer,
        xhat: &GpuBuffer,
        g: &GroupNormGeometry,
    ) -> (GpuBuffer, GpuBuffer) {
        Gpu::group_norm_affine_grads(self, dy, xhat, g)
    }
    fn softmax(&self, x: &GpuBuffer, cols: usize, log: bool) -> GpuBuffer {
        Gpu::softmax(self, x, cols, log)
    }
    fn softmax_backward(
        &self,
        y: &GpuBuffer,
        grad: &GpuBuffer,
        cols: usize,
        log: bool,
    ) -> GpuBuffer {
        Gpu::softmax_backward(self, y, grad, cols, log)
    }
    fn cross_entropy(&self, logits: &GpuBuffer, targets: &[usize], cols: usize) -> GpuBuffer {
        Gpu::cross_entropy(self, logits, targets, cols)
    }
    fn cross_entropy_backward(
        &self,
        logits: &GpuBuffer,
        targets: &[usize],
        grad: &GpuBuffer,
        cols: usize,
    ) -> GpuBuffer {
        Gpu::cross_entropy_backward(self, logits, targets, grad, cols)
    }
    fn gather(
        &self,
        x: &GpuBuffer,
        index: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        Gpu::gather(self, x, index, outer, len, inner)
    }
    fn scatter_add(
        &self,
        base: &GpuBuffer,
        index: &[usize],
        src: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        Gpu::scatter_add(self, base, index, src, outer, len, inner)
    }
    fn index_select(
        &self,
        x: &GpuBuffer,
        index: &[usize],
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        Gpu::index_select(self, x, index, outer, len, inner)
    }
    fn index_add(
        &self,
        base: &GpuBuffer,
        index: &[usize],
        src: &GpuBuffer,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> GpuBuffer {
        Gpu::index_add(self, base, index, src, outer, len, inner)
    }
}
