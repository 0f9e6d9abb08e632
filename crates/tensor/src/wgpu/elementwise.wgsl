// Elementwise kernels: strided gather (permute, broadcast), broadcasting binary ops, scalar
// ops, axpy, unary ops and their derivatives, block copies and fills.
//
// Parameter layout (binding 0), shared by every entry point of this file:
//   p[0] = n (elements of the output), p[1] = rank (<= 8), p[2] = op code, p[3] = f32 bits of
//   a scalar (scalar ops, axpy alpha, fill value), p[4] = flag (scalar first),
//   p[8..16]  = output shape, p[16..24] = strides of `a`, p[24..32] = strides of `b`.
// Block copy reuses p[8..]: p[8] = len*inner (block), p[9] = src outer stride,
//   p[10] = dst outer stride, p[11] = src offset, p[12] = dst offset.

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

fn binary_op(op: u32, x: f32, y: f32) -> f32 {
    switch op {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        default: { return x; } // 4: take the first operand (broadcast copy)
    }
}

// Offsets of output element `i` in `a` and `b`.
fn offsets(i: u32) -> vec2<u32> {
    var rem = i;
    var oa = 0u;
    var ob = 0u;
    let r = p[1];
    for (var d = 0u; d < r; d++) {
        let k = r - 1u - d;
        let s = p[8u + k];
        let idx = rem % s;
        rem = rem / s;
        oa += idx * p[16u + k];
        ob += idx * p[24u + k];
    }
    return vec2<u32>(oa, ob);
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    let o = offsets(i);
    out[i] = binary_op(p[2], a[o.x], b[o.y]);
}

// out[i] = a[offset_a(i)]: permutations and broadcasts.
@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    out[i] = a[offsets(i).x];
}

@compute @workgroup_size(256)
fn scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    let s = bitcast<f32>(p[3]);
    if p[4] != 0u {
        out[i] = binary_op(p[2], s, a[i]);
    } else {
        out[i] = binary_op(p[2], a[i], s);
    }
}

// out += alpha * a (in place on `out`).
@compute @workgroup_size(256)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    out[i] = out[i] + bitcast<f32>(p[3]) * a[i];
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    out[i] = bitcast<f32>(p[3]);
}

// Copies `outer` blocks of p[8] values between strided positions (narrow, cat).
@compute @workgroup_size(256)
fn copy_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    let blk = p[8];
    let o = i / blk;
    let r = i % blk;
    out[p[12] + o * p[10] + r] = a[p[11] + o * p[9] + r];
}

const SQRT_2_OVER_PI: f32 = 0.7978846;
const GELU_C: f32 = 0.044715;

fn softplus(x: f32) -> f32 {
    if x > 20.0 { return x; }
    if x < -20.0 { return exp(x); }
    // log(1 + e^x) loses digits for tiny e^x; use the series there.
    let e = exp(x);
    if e < 1e-4 { return e - 0.5 * e * e; }
    return log(1.0 + e);
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 { return 1.0 / (1.0 + exp(-x)); }
    let e = exp(x);
    return e / (1.0 + e);
}

// tanh via exp: WGSL's tanh overflows to NaN for large |x| on some drivers.
fn tanh_safe(x: f32) -> f32 {
    if x > 15.0 { return 1.0; }
    if x < -15.0 { return -1.0; }
    if abs(x) < 1e-3 { return x - x * x * x / 3.0; }
    let e = exp(2.0 * x);
    return (e - 1.0) / (e + 1.0);
}

fn unary_forward(op: u32, x: f32) -> f32 {
    switch op {
        case 0u: { return max(x, 0.0); }
        case 1u: { return tanh_safe(x); }
        case 2u: { return 0.5 * x * (1.0 + tanh_safe(SQRT_2_OVER_PI * (x + GELU_C * x * x * x))); }
        case 3u: { return x * tanh_safe(softplus(x)); }
        case 4u: { return exp(x); }
        case 5u: { return log(x); }
        case 6u: { return sqrt(x); }
        case 7u: { return abs(x); }
        case 8u: { return -x; }
        case 9u: { return x * x; }
        default: { return sigmoid(x); } // 10
    }
}

fn unary_derivative(op: u32, x: f32) -> f32 {
    switch op {
        case 0u: { return select(0.0, 1.0, x > 0.0); }
        case 1u: { let t = tanh_safe(x); return 1.0 - t * t; }
        case 2u: {
            let t = tanh_safe(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
        }
        case 3u: { let t = tanh_safe(softplus(x)); return t + x * (1.0 - t * t) * sigmoid(x); }
        case 4u: { return exp(x); }
        case 5u: { return 1.0 / x; }
        case 6u: { return 0.5 / sqrt(x); }
        case 7u: { return select(select(0.0, -1.0, x < 0.0), 1.0, x > 0.0); }
        case 8u: { return -1.0; }
        case 9u: { return 2.0 * x; }
        default: { let s = sigmoid(x); return s * (1.0 - s); }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    out[i] = unary_forward(p[2], a[i]);
}

// out = grad * f'(x) with x = a, grad = b.
@compute @workgroup_size(256)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, nwg, lid);
    if i >= p[0] { return; }
    out[i] = b[i] * unary_derivative(p[2], a[i]);
}
