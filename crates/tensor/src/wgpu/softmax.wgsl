// Softmax / log-softmax over rows, their backward, and cross-entropy against class indices.
// One thread per row: rows are class scores (tens to thousands of columns).
//
// Parameters: p[0] rows, p[1] cols, p[2] log (1) or plain (0).

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn row_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

fn row_max(base: u32, cols: u32) -> f32 {
    var m = bitcast<f32>(0xff800000u);
    for (var j = 0u; j < cols; j++) { m = max(m, x[base + j]); }
    return m;
}

fn row_sum_exp(base: u32, cols: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < cols; j++) { s += exp(x[base + j] - m); }
    return s;
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg, lid);
    let cols = p[1];
    if r >= p[0] { return; }
    let base = r * cols;
    let m = row_max(base, cols);
    let s = row_sum_exp(base, cols, m);
    if p[2] != 0u {
        let lse = log(s);
        for (var j = 0u; j < cols; j++) { out[base + j] = x[base + j] - m - lse; }
    } else {
        for (var j = 0u; j < cols; j++) { out[base + j] = exp(x[base + j] - m) / s; }
    }
}

// x = y (the forward output), g = incoming gradient.
@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg, lid);
    let cols = p[1];
    if r >= p[0] { return; }
    let base = r * cols;
    if p[2] != 0u {
        var s = 0.0;
        for (var j = 0u; j < cols; j++) { s += g[base + j]; }
        for (var j = 0u; j < cols; j++) { out[base + j] = g[base + j] - exp(x[base + j]) * s; }
    } else {
        var dot = 0.0;
        for (var j = 0u; j < cols; j++) { dot += g[base + j] * x[base + j]; }
        for (var j = 0u; j < cols; j++) { out[base + j] = x[base + j] * (g[base + j] - dot); }
    }
}

// out[r] = -log_softmax(x)[r, targets[r]].
@compute @workgroup_size(256)
fn cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg, lid);
    let cols = p[1];
    if r >= p[0] { return; }
    let base = r * cols;
    let m = row_max(base, cols);
    let s = row_sum_exp(base, cols, m);
    out[r] = -(x[base + targets[r]] - m - log(s));
}

// out[r, j] = g[r] * (softmax(x)[r, j] - [j == targets[r]]).
@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let r = row_id(wid, nwg, lid);
    let cols = p[1];
    if r >= p[0] { return; }
    let base = r * cols;
    let m = row_max(base, cols);
    let s = row_sum_exp(base, cols, m);
    let t = targets[r];
    for (var j = 0u; j < cols; j++) {
        var q = exp(x[base + j] - m) / s;
        if j == t { q -= 1.0; }
        out[base + j] = q * g[r];
    }
}
