// Reductions over the middle axis of [outer, len, inner], the max backward and per-row squared
// norms.
//
// Parameters: p[0] = outer, p[1] = len, p[2] = inner, p[3] = op
// (0 sum, 1 mean, 2 max, 3 sum of squares).

@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn neg_inf() -> f32 { return bitcast<f32>(0xff800000u); }

fn init(op: u32) -> f32 {
    if op == 2u { return neg_inf(); }
    return 0.0;
}

fn combine(op: u32, acc: f32, v: f32) -> f32 {
    switch op {
        case 2u: { return select(acc, v, v > acc); }
        case 3u: { return acc + v * v; }
        default: { return acc + v; }
    }
}

// Merge two partial results (sums of squares are already squared).
fn merge(op: u32, a: f32, b: f32) -> f32 {
    if op == 2u { return select(a, b, b > a); }
    return a + b;
}

fn finish(op: u32, acc: f32, len: u32) -> f32 {
    if op == 1u { return acc / f32(len); }
    return acc;
}

// One thread per output (o, i): coalesced when inner is large.
@compute @workgroup_size(256)
fn reduce_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = (wid.y * nwg.x + wid.x) * 256u + lid;
    let outer = p[0]; let len = p[1]; let inner = p[2]; let op = p[3];
    if t >= outer * inner { return; }
    let o = t / inner;
    let i = t % inner;
    var acc = init(op);
    let base = o * len * inner + i;
    for (var l = 0u; l < len; l++) {
        acc = combine(op, acc, x[base + l * inner]);
    }
    out[t] = finish(op, acc, len);
}

var<workgroup> part: array<f32, 256>;

// One workgroup per output when inner == 1 (long contiguous rows).
@compute @workgroup_size(256)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let outer = p[0]; let len = p[1]; let op = p[3];
    // `row` is uniform across the workgroup, so every thread reaches the barriers.
    let live = row < outer;
    var acc = init(op);
    if live {
        let base = row * len;
        for (var l = lid; l < len; l += 256u) {
            acc = combine(op, acc, x[base + l]);
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if lid < s {
            part[lid] = merge(op, part[lid], part[lid + s]);
        }
        workgroupBarrier();
    }
    if live && lid == 0u {
        out[row] = finish(op, part[0], len);
    }
}

// dx[o, l, i] = g[o, i] where l is the first arg-max of x[o, :, i], else 0.
@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = (wid.y * nwg.x + wid.x) * 256u + lid;
    let outer = p[0]; let len = p[1]; let inner = p[2];
    if t >= outer * inner { return; }
    let o = t / inner;
    let i = t % inner;
    let base = o * len * inner + i;
    var best = 0u;
    for (var l = 1u; l < len; l++) {
        if x[base + l * inner] > x[base + best * inner] { best = l; }
    }
    out[base + best * inner] = g[t];
}
