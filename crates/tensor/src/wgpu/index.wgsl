// Gather / scatter-add along the middle axis of [outer, len, inner] and whole-slice select /
// add. Scatters are written in gather form (each output sums the sources that target it), so
// repeated indices need no atomics and sums are deterministic.
//
// Parameters: p[0] outer, p[1] len, p[2] inner, p[3] j (index extent along the axis).

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn linear(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

// out[o, jj, i] = x[o, index[o, jj, i], i]
@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    let len = p[1]; let inner = p[2]; let j = p[3];
    if t >= p[0] * j * inner { return; }
    let i = t % inner;
    let o = t / (j * inner);
    out[t] = x[(o * len + index[t]) * inner + i];
}

// out[o, l, i] = x[o, l, i] + sum_{jj : index[o, jj, i] = l} src[o, jj, i]
@compute @workgroup_size(256)
fn scatter_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    let len = p[1]; let inner = p[2]; let j = p[3];
    if t >= p[0] * len * inner { return; }
    let i = t % inner;
    let l = (t / inner) % len;
    let o = t / (len * inner);
    var acc = x[t];
    for (var jj = 0u; jj < j; jj++) {
        let q = (o * j + jj) * inner + i;
        if index[q] == l { acc += src[q]; }
    }
    out[t] = acc;
}

// out[o, jj, i] = x[o, index[jj], i]
@compute @workgroup_size(256)
fn index_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    let len = p[1]; let inner = p[2]; let j = p[3];
    if t >= p[0] * j * inner { return; }
    let i = t % inner;
    let jj = (t / inner) % j;
    let o = t / (j * inner);
    out[t] = x[(o * len + index[jj]) * inner + i];
}

// out[o, l, i] = x[o, l, i] + sum_{jj : index[jj] = l} src[o, jj, i]
@compute @workgroup_size(256)
fn index_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = linear(wid, nwg, lid);
    let len = p[1]; let inner = p[2]; let j = p[3];
    if t >= p[0] * len * inner { return; }
    let i = t % inner;
    let l = (t / inner) % len;
    let o = t / (len * inner);
    var acc = x[t];
    for (var jj = 0u; jj < j; jj++) {
        if index[jj] == l { acc += src[(o * j + jj) * inner + i]; }
    }
    out[t] = acc;
}
